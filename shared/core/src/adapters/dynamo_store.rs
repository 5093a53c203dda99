//! The DynamoDB store: one table, keys `pk`/`sk`, two overloaded GSIs.
//!
//! | item | pk | sk | gsi1pk / gsi1sk | gsi2pk / gsi2sk |
//! | --- | --- | --- | --- | --- |
//! | referral | `REF#<id>` | `REF` | `REFS` / `<created>#<id>` | `REFS#<eligible or skip reason>` / same |
//! | lead | `LEAD#<domain>` | `LEAD` | `LEADS` / `<score:03>#<domain>` | `SEGMENT#<segment>` / same |
//! | audit entry | `LEAD#<domain>` | `AUDIT#<at>#<id>` | | |
//! | sync run | `RUN#<id>` | `RUN` | `RUNS` / `<startedAt>#<id>` | |
//! | sync state | `STATE#<key>` | `STATE` | | |
//! | payload chunk | `PAYLOAD#<key>` | `CHUNK#0000`, `CHUNK#0001`, ... | | |
//!
//! Access patterns: a referral, lead, run or state by id (GetItem); referrals newest first (gsi1,
//! descending), eligible ones or those with one skip reason newest first (gsi2); leads by score
//! (gsi1) or by segment and score (gsi2); a lead's audit trail newest first (Query on its pk);
//! sync runs newest first (gsi1). Other filters are FilterExpressions on those queries.
//! Referrals are written with a condition on their version (`versionKey`, then `etagKey`), leads
//! and state with a condition on their `version` counter; audit entries only if absent.
//! The `REFS`/`LEADS`/`RUNS` partitions are single GSI partitions: fine for a partner's referral
//! volume (thousands, a few writes per second); shard them by a suffix before it grows 100x.
//! An item holds 400 KB: a payload ([`PayloadStore`]) is split into chunks of at most
//! [`PAYLOAD_CHUNK_BYTES`], and a referral whose record would not fit keeps its raw text in a
//! payload of its own (`rawRef` on the item), read back transparently.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType, TransactWriteItem,
    Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys::{
    audit_sort_key, decode_cursor, encode_cursor, lead_order_key, lead_sort_key, page_by_key,
    referral_sort_key, run_sort_key,
};
use crate::ports::{FailureStore, MessageFailure, PayloadStore, RunCount, StoreError};
use crate::ports::{
    LeadQuery, LeadSort, LeadStore, MAX_PAGE_SIZE, Page, ReferralQuery, ReferralStore, SyncStore,
    UpsertOutcome, page_size,
};
use hunter_domain::model::{AuditEntry, Lead, LeadReferral, ReferralRecord, SyncRun, SyncState};
use hunter_domain::rules::{Domain, VersionOrder, compare_versions};
use hunter_domain::stats::{LeadStats, LeadTally};

type Attributes = HashMap<String, AttributeValue>;

/// How many items one Query evaluates at most before filters; pages loop until full.
const QUERY_CHUNK: i32 = 100;
/// Leads per Query page when counting them (small items: only the counted fields are read).
const STATS_CHUNK: i32 = 1000;

/// [`crate::ports::Store`] on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// The stored item: keys and index attributes around the record's own fields.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item<T> {
    pk: String,
    sk: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_key: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag_key: Option<String>,
    /// The payload holding a referral's raw text when the record is too large for one item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw_ref: Option<String>,
    #[serde(flatten)]
    data: T,
}

impl<T> Item<T> {
    fn new(pk: String, sk: &str, data: T) -> Self {
        Self {
            pk,
            sk: sk.to_owned(),
            gsi1pk: None,
            gsi1sk: None,
            gsi2pk: None,
            gsi2sk: None,
            search_text: None,
            version_key: None,
            etag_key: None,
            raw_ref: None,
            data,
        }
    }
}

fn referral_pk(id: &str) -> String {
    format!("REF#{id}")
}
fn lead_pk(domain: &Domain) -> String {
    format!("LEAD#{domain}")
}
fn run_pk(id: &str) -> String {
    format!("RUN#{id}")
}
fn state_pk(key: &str) -> String {
    format!("STATE#{key}")
}
fn failure_pk(queue: &str, message_id: &str) -> String {
    format!("FAILURE#{queue}#{message_id}")
}
fn payload_pk(key: &str) -> String {
    format!("PAYLOAD#{key}")
}
fn chunk_sk(index: usize) -> String {
    format!("CHUNK#{index:04}")
}

/// Largest piece of a payload in one item (an item holds 400 KB, keys and names included).
pub const PAYLOAD_CHUNK_BYTES: usize = 300 * 1000;
/// A referral whose record serializes larger keeps its raw text in a payload of its own.
const INLINE_RECORD_MAX_BYTES: usize = 350 * 1000;

/// `text` cut into pieces of at most `max` bytes, on character boundaries (at least one piece).
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// The payload key of a referral's raw text: per referral and content, so a write that loses
/// its version check never touches the raw text of the stored version.
fn raw_payload_key(referral_id: &str, raw: &str) -> String {
    format!(
        "raw/{referral_id}/{}",
        hunter_domain::referral::content_digest(raw)
    )
}

fn text_attribute<'a>(item: &'a Attributes, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}
fn referral_bucket(r: &ReferralRecord) -> String {
    match r.skip_reason {
        Some(reason) => format!("REFS#{reason}"),
        None => "REFS#eligible".to_owned(),
    }
}

fn to_item<T: Serialize>(item: &Item<T>) -> Result<Attributes, StoreError> {
    serde_dynamo::to_item(item).map_err(|e| StoreError::InvalidItem(e.to_string()))
}

fn from_item<T: DeserializeOwned>(attributes: Attributes) -> Result<T, StoreError> {
    serde_dynamo::from_item::<_, Item<T>>(attributes)
        .map(|item| item.data)
        .map_err(|e| StoreError::InvalidItem(e.to_string()))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Maps an SDK failure to a typed store error (conditional check failures to `Conflict`).
fn store_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(&err).to_string();
    match err.code() {
        Some("ConditionalCheckFailedException" | "TransactionCanceledException") => {
            StoreError::Conflict(text)
        }
        Some("ValidationException" | "SerializationException") => StoreError::InvalidItem(text),
        _ => StoreError::Unavailable(text),
    }
}

/// Sort-key prefix of a lead's contributions (the lead's referrals), beside its `LEAD` item.
const CONTRIBUTION_SK_PREFIX: &str = "REF#";

fn contribution_sk(referral_id: &str) -> String {
    format!("{CONTRIBUTION_SK_PREFIX}{referral_id}")
}

/// `put` under a check of the stored `version` (`None`: nothing may be stored).
fn versioned(
    put: aws_sdk_dynamodb::types::builders::PutBuilder,
    expected: Option<u64>,
) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    match expected {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(version) => put
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(version)),
    }
}

/// A cancelled transaction: a failed condition (another writer got in first) is a conflict, an
/// item the table refuses is invalid, the rest may pass.
fn transaction_error<R: std::fmt::Debug>(err: SdkError<TransactWriteItemsError, R>) -> StoreError {
    let text = DisplayErrorContext(&err).to_string();
    let reasons = err.as_service_error().and_then(|e| match e {
        TransactWriteItemsError::TransactionCanceledException(c) => c.cancellation_reasons.as_ref(),
        _ => None,
    });
    let Some(reasons) = reasons else {
        return store_error(err);
    };
    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
    if codes.contains(&"ValidationError") {
        StoreError::InvalidItem(text)
    } else if codes.contains(&"ConditionalCheckFailed")
        && codes
            .iter()
            .all(|c| matches!(*c, "None" | "ConditionalCheckFailed"))
    {
        StoreError::Conflict(text)
    } else {
        StoreError::Unavailable(text)
    }
}

/// One query over an index, filters included, and the cursor that resumes it.
#[derive(Clone)]
struct IndexQuery {
    index: &'static str,
    pk_attribute: &'static str,
    pk_value: String,
    filters: Vec<String>,
    values: Attributes,
    names: HashMap<String, String>,
}

impl IndexQuery {
    fn new(index: &'static str, pk_attribute: &'static str, pk_value: String) -> Self {
        Self {
            index,
            pk_attribute,
            pk_value,
            filters: Vec::new(),
            values: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn filter(&mut self, expression: &str, name: &str, attribute: &str, value: AttributeValue) {
        self.filters.push(expression.to_owned());
        self.names.insert(format!("#{name}"), attribute.to_owned());
        self.values.insert(format!(":{name}"), value);
    }

    /// Items whose `attribute` equals `value`.
    fn equals(&mut self, attribute: &str, value: AttributeValue) {
        self.filter(
            &format!("#{attribute} = :{attribute}"),
            attribute,
            attribute,
            value,
        );
    }

    /// Items whose `attribute` is one of `values` (no filter for none).
    fn one_of(&mut self, attribute: &str, values: &[&str]) {
        if values.is_empty() {
            return;
        }
        let placeholders: Vec<String> = (0..values.len())
            .map(|i| format!(":{attribute}{i}"))
            .collect();
        self.filters
            .push(format!("#{attribute} IN ({})", placeholders.join(", ")));
        self.names
            .insert(format!("#{attribute}"), attribute.to_owned());
        for (placeholder, value) in placeholders.into_iter().zip(values) {
            self.values.insert(placeholder, s(*value));
        }
    }

    /// Items whose search text holds `text` (case-insensitive); no filter for none or "".
    fn search(&mut self, text: Option<&str>) {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let value = s(text.to_lowercase());
            self.filter("contains(#search, :search)", "search", "searchText", value);
        }
    }

    fn sk_attribute(&self) -> String {
        self.pk_attribute.replace("pk", "sk")
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and its indexes unless it exists (local mode and tests; AWS uses template.yaml).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        if self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(invalid)
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(invalid)
        };
        let gsi = |name: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(&format!("{name}pk"), KeyType::Hash)?)
                .key_schema(key(&format!("{name}sk"), KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(invalid)
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi("gsi1")?)
            .global_secondary_indexes(gsi("gsi2")?);
        for name in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
            request = request.attribute_definitions(attribute(name)?);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ResourceInUseException") => Ok(()),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(pk, sk).await?.map(from_item).transpose()
    }

    /// One item as stored (consistent read).
    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Attributes>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(output.item)
    }

    /// Puts `item` if the stored `version` is `expected` (`None`: no item is stored).
    async fn put_versioned<T: Serialize>(
        &self,
        item: &Item<T>,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(item)?));
        let put = versioned(put, expected);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(put.get_item().clone())
            .set_condition_expression(put.get_condition_expression().clone())
            .set_expression_attribute_names(put.get_expression_attribute_names().clone())
            .set_expression_attribute_values(put.get_expression_attribute_values().clone())
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Runs `query` from `cursor` until `limit` items passed its filters or the index ends.
    async fn query_page<T: DeserializeOwned>(
        &self,
        query: IndexQuery,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<T>, StoreError> {
        let page = self.query_items(query, cursor, limit).await?;
        let items = page
            .items
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// [`DynamoStore::query_page`], the items as stored.
    async fn query_items(
        &self,
        query: IndexQuery,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Attributes>, StoreError> {
        let size = page_size(limit);
        let sk_attribute = query.sk_attribute();
        let mut start = cursor
            .map(|c| self.decode_start_key(c, &query))
            .transpose()?;
        let mut names = query.names.clone();
        names.insert("#gpk".to_owned(), query.pk_attribute.to_owned());
        let mut values = query.values.clone();
        values.insert(":gpk".to_owned(), s(query.pk_value.clone()));
        let filter = (!query.filters.is_empty()).then(|| query.filters.join(" AND "));
        let mut kept: Vec<Attributes> = Vec::new();
        let mut more = false;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(query.index)
                .key_condition_expression("#gpk = :gpk")
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(QUERY_CHUNK)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            kept.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                _ if kept.len() > size => {
                    kept.truncate(size);
                    more = true;
                    break;
                }
                Some(key) => {
                    if kept.len() == size {
                        more = true;
                        break;
                    }
                    start = Some(key);
                }
                None => break,
            }
        }
        let next_cursor = match (more, kept.last()) {
            (true, Some(last)) => Some(encode_start_key(last, query.pk_attribute, &sk_attribute)?),
            _ => None,
        };
        Ok(Page {
            items: kept,
            next_cursor,
        })
    }

    /// A referral as stored, its raw text read back from its payload when the item has none.
    async fn referral_from_item(&self, item: Attributes) -> Result<ReferralRecord, StoreError> {
        let raw_ref = text_attribute(&item, "rawRef").map(str::to_owned);
        let mut record: ReferralRecord = from_item(item)?;
        if let Some(key) = raw_ref {
            record.raw = self.get_payload(&key).await?.ok_or_else(|| {
                StoreError::InvalidItem(format!(
                    "referral {}: its raw payload {key} is missing",
                    record.id
                ))
            })?;
        }
        Ok(record)
    }

    /// Removes the chunks of payload `key` (what is left of an earlier version; best effort).
    async fn delete_payload(&self, key: &str) -> Result<(), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(payload_pk(key)))
            .projection_expression("pk, sk")
            .send()
            .await
            .map_err(store_error)?;
        for item in output.items.unwrap_or_default() {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(item))
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    fn decode_start_key(&self, cursor: &str, query: &IndexQuery) -> Result<Attributes, StoreError> {
        let text = decode_cursor(cursor)?;
        let key: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|_| StoreError::InvalidCursor)?;
        let expected = [
            query.pk_attribute.to_owned(),
            query.sk_attribute(),
            "pk".to_owned(),
            "sk".to_owned(),
        ];
        if key.len() != expected.len()
            || !expected.iter().all(|k| key.contains_key(k))
            || key.get(query.pk_attribute) != Some(&query.pk_value)
        {
            return Err(StoreError::InvalidCursor);
        }
        Ok(key.into_iter().map(|(k, v)| (k, s(v))).collect())
    }
}

fn invalid(err: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidItem(err.to_string())
}

/// The cursor of the position after `item` in an index: its table and index keys.
fn encode_start_key(
    item: &Attributes,
    pk_attribute: &str,
    sk_attribute: &str,
) -> Result<String, StoreError> {
    let mut key = HashMap::new();
    for name in ["pk", "sk", pk_attribute, sk_attribute] {
        let value = item
            .get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::InvalidItem(format!("item without {name}")))?;
        key.insert(name.to_owned(), value.clone());
    }
    let text = serde_json::to_string(&key).map_err(invalid)?;
    Ok(encode_cursor(&text))
}

#[async_trait]
impl ReferralStore for DynamoStore {
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError> {
        let version = record.version();
        let sort = referral_sort_key(record);
        let record_bytes = serde_json::to_vec(record).map_err(invalid)?.len();
        let (raw_ref, offloaded) = if record_bytes > INLINE_RECORD_MAX_BYTES {
            // Too large for one item: the raw text goes into a payload of its own first.
            let key = raw_payload_key(&record.id, &record.raw);
            self.put_payload(&key, &record.raw).await?;
            let without_raw = ReferralRecord {
                raw: String::new(),
                ..record.clone()
            };
            (Some(key), Some(without_raw))
        } else {
            (None, None)
        };
        let mut item = Item::new(
            referral_pk(&record.id),
            "REF",
            offloaded.as_ref().unwrap_or(record),
        );
        item.raw_ref = raw_ref.clone();
        item.gsi1pk = Some("REFS".to_owned());
        item.gsi1sk = Some(sort.clone());
        item.gsi2pk = Some(referral_bucket(record));
        item.gsi2sk = Some(sort);
        item.search_text = Some(record.search_text());
        item.version_key = Some(version.sort_key());
        item.etag_key = Some(version.etag.clone().unwrap_or_default());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression(
                "attribute_not_exists(pk) OR versionKey < :v OR (versionKey = :v AND etagKey <> :e)",
            )
            .expression_attribute_values(":v", n(version.sort_key()))
            .expression_attribute_values(":e", s(version.etag.clone().unwrap_or_default()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) if output.attributes.as_ref().is_some_and(|a| !a.is_empty()) => {
                let replaced_ref = output
                    .attributes
                    .as_ref()
                    .and_then(|old| text_attribute(old, "rawRef"))
                    .filter(|old| Some(*old) != raw_ref.as_deref());
                if let Some(old) = replaced_ref {
                    if let Err(err) = self.delete_payload(old).await {
                        tracing::warn!(event = "store_payload_cleanup_failed", key = old, error = %err);
                    }
                }
                Ok(UpsertOutcome::Updated)
            }
            Ok(_) => Ok(UpsertOutcome::Inserted),
            Err(err) => match store_error(err) {
                StoreError::Conflict(_) => {
                    let stored = self.get_referral(&record.id).await?;
                    Ok(
                        match stored.map(|r| compare_versions(&version, &r.version())) {
                            Some(VersionOrder::Same) => UpsertOutcome::Unchanged,
                            _ => UpsertOutcome::Stale,
                        },
                    )
                }
                other => Err(other),
            },
        }
    }

    async fn get_referral(&self, id: &str) -> Result<Option<ReferralRecord>, StoreError> {
        match self.get_item(referral_pk(id), "REF").await? {
            Some(item) => Ok(Some(self.referral_from_item(item).await?)),
            None => Ok(None),
        }
    }

    async fn list_referrals(&self, q: &ReferralQuery) -> Result<Page<ReferralRecord>, StoreError> {
        let mut query = match (q.skip_reason, q.eligible) {
            (Some(reason), _) => IndexQuery::new("gsi2", "gsi2pk", format!("REFS#{reason}")),
            (None, Some(true)) => IndexQuery::new("gsi2", "gsi2pk", "REFS#eligible".to_owned()),
            (None, _) => IndexQuery::new("gsi1", "gsi1pk", "REFS".to_owned()),
        };
        if let Some(status) = &q.status {
            query.equals("status", s(status));
        }
        if let Some(substatus) = &q.substatus {
            query.equals("substatus", s(substatus));
        }
        if let Some(eligible) = q.eligible {
            query.equals("eligible", AttributeValue::Bool(eligible));
        }
        query.search(q.q.as_deref());
        let page = self
            .query_items(query, q.cursor.as_deref(), q.limit)
            .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for item in page.items {
            items.push(self.referral_from_item(item).await?);
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }
}

#[async_trait]
impl LeadStore for DynamoStore {
    async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError> {
        self.get(lead_pk(domain), "LEAD").await
    }

    async fn put_lead(
        &self,
        lead: &Lead,
        expected_version: Option<u64>,
        contribution: Option<&LeadReferral>,
    ) -> Result<(), StoreError> {
        let sort = lead_sort_key(lead);
        let mut item = Item::new(lead_pk(&lead.domain), "LEAD", lead);
        item.gsi1pk = Some("LEADS".to_owned());
        item.gsi1sk = Some(sort.clone());
        if let Some(segment) = &lead.segment {
            item.gsi2pk = Some(format!("SEGMENT#{segment}"));
            item.gsi2sk = Some(sort);
        }
        item.search_text = Some(lead.search_text());
        let Some(contribution) = contribution else {
            return self.put_versioned(&item, expected_version).await;
        };
        // The lead under its version check and the contribution beside it, all or nothing.
        let lead_put = versioned(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(&item)?)),
            expected_version,
        )
        .build()
        .map_err(invalid)?;
        let contribution_item = Item::new(
            lead_pk(&lead.domain),
            &contribution_sk(&contribution.id),
            contribution,
        );
        let contribution_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&contribution_item)?))
            .build()
            .map_err(invalid)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(lead_put).build())
            .transact_items(TransactWriteItem::builder().put(contribution_put).build())
            .send()
            .await
            .map_err(transaction_error)?;
        Ok(())
    }

    async fn get_contribution(
        &self,
        domain: &Domain,
        referral_id: &str,
    ) -> Result<Option<LeadReferral>, StoreError> {
        self.get(lead_pk(domain), &contribution_sk(referral_id))
            .await
    }

    async fn list_contributions(
        &self,
        domain: &Domain,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LeadReferral>, StoreError> {
        let pk = lead_pk(domain);
        let start = cursor
            .map(|c| -> Result<Attributes, StoreError> {
                let id = decode_cursor(c)?;
                Ok(HashMap::from([
                    ("pk".to_owned(), s(pk.clone())),
                    ("sk".to_owned(), s(contribution_sk(&id))),
                ]))
            })
            .transpose()?;
        let size = page_size(limit);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :ref)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":ref", s(CONTRIBUTION_SK_PREFIX))
            .consistent_read(true)
            .limit(i32::try_from(size).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(store_error)?;
        let items: Vec<LeadReferral> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        let next_cursor = match (output.last_evaluated_key, items.last()) {
            (Some(_), Some(last)) => Some(encode_cursor(&last.id)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn list_leads(&self, q: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        let mut query = match &q.segment {
            Some(segment) => IndexQuery::new("gsi2", "gsi2pk", format!("SEGMENT#{segment}")),
            None => IndexQuery::new("gsi1", "gsi1pk", "LEADS".to_owned()),
        };
        if let Some(provider) = &q.provider {
            query.equals("provider", s(provider));
        }
        let categories: Vec<&str> = q.priority_categories.iter().map(|c| c.as_str()).collect();
        query.one_of("priorityCategory", &categories);
        if let Some(min) = q.min_score.filter(|m| *m > 0) {
            query.filter("#score >= :score", "score", "score", n(min));
        }
        if let Some(status) = q.sync_status {
            let value = serde_json::to_value(status).map_err(invalid)?;
            query.equals("syncStatus", s(value.as_str().unwrap_or_default()));
        }
        if let Some(state) = q.scan_state {
            query.equals("scanState", s(state.as_str()));
        }
        query.search(q.q.as_deref());
        if q.sort == LeadSort::Score {
            return self.query_page(query, q.cursor.as_deref(), q.limit).await;
        }
        // Other orders have no index: the matching leads are read whole and sorted here, which
        // a partner's lead volume (thousands) allows.
        let mut matching: Vec<Lead> = Vec::new();
        let mut cursor = None;
        loop {
            let page: Page<Lead> = self
                .query_page(query.clone(), cursor.as_deref(), Some(MAX_PAGE_SIZE))
                .await?;
            matching.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let keyed = matching
            .into_iter()
            .map(|l| (lead_order_key(&l, q.sort), l))
            .collect();
        page_by_key(keyed, q.sort.descending(), q.cursor.as_deref(), q.limit)
    }

    /// One Query over the `LEADS` partition of gsi1, reading only the counted fields; a
    /// partner's lead volume (thousands) is a few pages.
    async fn lead_stats(&self) -> Result<LeadStats, StoreError> {
        let mut names: HashMap<String, String> = LeadTally::FIELDS
            .iter()
            .map(|field| (format!("#{field}"), (*field).to_owned()))
            .collect();
        names.insert("#gpk".to_owned(), "gsi1pk".to_owned());
        let projection = LeadTally::FIELDS
            .map(|field| format!("#{field}"))
            .join(", ");
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("#gpk = :gpk")
            .expression_attribute_values(":gpk", s("LEADS"))
            .set_expression_attribute_names(Some(names))
            .projection_expression(projection)
            .limit(STATS_CHUNK)
            .into_paginator()
            .items()
            .send();
        let mut stats = LeadStats::default();
        while let Some(item) = items.next().await {
            let tally: LeadTally = serde_dynamo::from_item(item.map_err(store_error)?)
                .map_err(|e| StoreError::InvalidItem(e.to_string()))?;
            stats.add(&tally);
        }
        Ok(stats)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let item = Item::new(lead_pk(&entry.domain), &audit_sort_key(entry), entry);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_audit(
        &self,
        domain: &Domain,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :audit)")
            .expression_attribute_values(":pk", s(lead_pk(domain)))
            .expression_attribute_values(":audit", s("AUDIT#"))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(store_error)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect()
    }
}

#[async_trait]
impl SyncStore for DynamoStore {
    async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let attribute = |v: serde_json::Value| -> Result<AttributeValue, StoreError> {
            serde_dynamo::to_attribute_value(v).map_err(invalid)
        };
        let json = serde_json::to_value(run).map_err(invalid)?;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&run.id)))
            .key("sk", s("RUN"))
            .expression_attribute_values(":gpk", s("RUNS"))
            .expression_attribute_values(":gsk", s(run_sort_key(run)));
        let mut sets = vec!["gsi1pk = :gpk".to_owned(), "gsi1sk = :gsk".to_owned()];
        for (i, field) in [
            "id",
            "startedAt",
            "finishedAt",
            "status",
            "pages",
            "fetched",
            "enqueued",
            "recordedInvalid",
            "error",
        ]
        .iter()
        .enumerate()
        {
            sets.push(format!("#f{i} = :f{i}"));
            request = request
                .expression_attribute_names(format!("#f{i}"), *field)
                .expression_attribute_values(format!(":f{i}"), attribute(json[field].clone())?);
        }
        for (i, field) in ["stored", "eligible", "skipped", "outcomes"]
            .iter()
            .enumerate()
        {
            sets.push(format!("#c{i} = if_not_exists(#c{i}, :c{i})"));
            request = request
                .expression_attribute_names(format!("#c{i}"), *field)
                .expression_attribute_values(format!(":c{i}"), attribute(json[field].clone())?);
        }
        request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn count_ingested(&self, count: RunCount<'_>) -> Result<bool, StoreError> {
        // One transaction: a marker item per (run, referral) that must not exist yet, and the
        // counter increments on the run, which must exist.
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(run_pk(count.run_id)))
            .item("sk", s(format!("COUNTED#{}", count.referral_id)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(invalid)?;
        let (decision, name) = match count.skip_reason {
            None => ("#eligible = if_not_exists(#eligible, :zero) + :one", None),
            Some(reason) => (
                "#skipped.#reason = if_not_exists(#skipped.#reason, :zero) + :one",
                Some(reason.as_str()),
            ),
        };
        let mut counters = Update::builder()
            .table_name(&self.table)
            .key("pk", s(run_pk(count.run_id)))
            .key("sk", s("RUN"))
            .condition_expression("attribute_exists(pk)")
            .update_expression(format!(
                "SET #stored = if_not_exists(#stored, :zero) + :one, #outcomes.#outcome = if_not_exists(#outcomes.#outcome, :zero) + :one, {decision}"
            ))
            .expression_attribute_names("#stored", "stored")
            .expression_attribute_names("#outcomes", "outcomes")
            .expression_attribute_names("#outcome", count.outcome.as_str())
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0));
        counters = match name {
            None => counters.expression_attribute_names("#eligible", "eligible"),
            Some(reason) => counters
                .expression_attribute_names("#skipped", "skipped")
                .expression_attribute_names("#reason", reason),
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(
                TransactWriteItem::builder()
                    .update(counters.build().map_err(invalid)?)
                    .build(),
            )
            .send()
            .await;
        match result.map_err(transaction_error) {
            Ok(_) => Ok(true),
            // Counted before (a redelivery), or the run is unknown: nothing to do.
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn claim_run_summary(&self, run_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(run_id)))
            .key("sk", s("RUN"))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#at)")
            .update_expression("SET #at = :now")
            .expression_attribute_names("#at", "summarizedAt")
            .expression_attribute_values(
                ":now",
                s(hunter_domain::clock::sortable(&hunter_domain::clock::now())),
            )
            .send()
            .await
            .map_err(store_error);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn get_sync_run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.get(run_pk(id), "RUN").await
    }

    async fn list_sync_runs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError> {
        self.query_page(
            IndexQuery::new("gsi1", "gsi1pk", "RUNS".to_owned()),
            cursor,
            limit,
        )
        .await
    }

    async fn get_state(&self, key: &str) -> Result<Option<SyncState>, StoreError> {
        self.get(state_pk(key), "STATE").await
    }

    async fn put_state(
        &self,
        state: &SyncState,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_versioned(
            &Item::new(state_pk(&state.key), "STATE", state),
            expected_version,
        )
        .await
    }
}

#[async_trait]
impl FailureStore for DynamoStore {
    async fn record_failure(&self, failure: &MessageFailure) -> Result<(), StoreError> {
        let item = to_item(&Item::new(
            failure_pk(&failure.queue, &failure.message_id),
            "FAILURE",
            failure,
        ))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_failure(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<Option<MessageFailure>, StoreError> {
        self.get(failure_pk(queue, message_id), "FAILURE").await
    }
}

#[async_trait]
impl PayloadStore for DynamoStore {
    /// One item per chunk (`CHUNK#0000`, ...), each naming the chunk count and the text's
    /// digest, the first chunk written last: a reader that meets a rewrite under way sees a mix
    /// and fails retryably; writers of the same text never conflict.
    async fn put_payload(&self, key: &str, text: &str) -> Result<(), StoreError> {
        let pieces = chunks(text, PAYLOAD_CHUNK_BYTES);
        let write_id = hunter_domain::referral::content_digest(text);
        for (index, piece) in pieces.iter().enumerate().rev() {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(payload_pk(key)))
                .item("sk", s(chunk_sk(index)))
                .item("text", s(*piece))
                .item("chunks", n(pieces.len()))
                .item("writeId", s(write_id.clone()))
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn get_payload(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(payload_pk(key)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut stored = Vec::new();
        while let Some(item) = items.next().await {
            stored.push(item.map_err(store_error)?);
        }
        let Some(first) = stored.first() else {
            return Ok(None);
        };
        let count: usize = first
            .get("chunks")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::InvalidItem(format!("payload {key}: no chunk count")))?;
        let write_id = text_attribute(first, "writeId")
            .unwrap_or_default()
            .to_owned();
        let mut text = String::new();
        for index in 0..count {
            let chunk = stored.get(index).filter(|c| {
                text_attribute(c, "sk") == Some(chunk_sk(index).as_str())
                    && text_attribute(c, "writeId") == Some(write_id.as_str())
            });
            let Some(piece) = chunk.and_then(|c| text_attribute(c, "text")) else {
                return Err(StoreError::Unavailable(format!(
                    "payload {key} is being written (chunk {index} of {count} is not there yet)"
                )));
            };
            text.push_str(piece);
        }
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_text_is_cut_into_chunks_should_keep_characters_whole_and_lose_nothing() {
        let text = "aé€😀".repeat(1000);
        for max in [4, 5, 7, 300, text.len(), text.len() + 1] {
            let pieces = chunks(&text, max);
            assert!(pieces.iter().all(|p| p.len() <= max), "max {max}");
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(chunks("", 10), vec![""]);
        assert_eq!(chunks(&"x".repeat(700_000), PAYLOAD_CHUNK_BYTES).len(), 3);
    }
}
