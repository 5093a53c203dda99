//! The port push-dynamics writes leads through, and its Dataverse adapter.

use async_trait::async_trait;
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

use super::client::{DataverseClient, KeyedRecord, MAX_BATCH_ITEMS, UpsertResult};
use super::error::DataverseError;
use super::mapping::{DynamicsMapping, TableMapping};

/// What a push did in Dynamics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedLead {
    /// The Dataverse row id.
    pub id: String,
    pub created: bool,
    /// A record made by hand for the domain was taken over (keyed) instead of creating another.
    pub adopted: bool,
}

impl PushedLead {
    /// The push that answered `result`; an adopted record was not created by it.
    fn of(result: UpsertResult, adopted: bool) -> Self {
        Self {
            id: result.id,
            created: result.created && !adopted,
            adopted,
        }
    }
}

/// One lead to upsert: its key, domain, mapped columns, and whether to adopt a hand-made record.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadUpsert {
    pub key: String,
    pub domain: String,
    pub record: Map<String, Value>,
    /// The lead's first push: look for a record people made by hand before creating one.
    pub adopt: bool,
}

/// Where leads go: upsert by Hunter's key, idempotent.
#[async_trait]
pub trait LeadSink: Send + Sync {
    /// Upserts `record` under `key`. On a lead's first push (`adopt`), a record people made by
    /// hand for `domain` is keyed and updated instead of creating a duplicate.
    async fn upsert_lead(
        &self,
        key: &str,
        domain: &str,
        record: &Map<String, Value>,
        adopt: bool,
    ) -> Result<PushedLead, DataverseError>;

    /// Upserts many leads; one result per lead, in order. The default pushes them one by one.
    async fn upsert_leads(&self, leads: &[LeadUpsert]) -> Vec<Result<PushedLead, DataverseError>> {
        let mut results = Vec::with_capacity(leads.len());
        for lead in leads {
            results.push(
                self.upsert_lead(&lead.key, &lead.domain, &lead.record, lead.adopt)
                    .await,
            );
        }
        results
    }

    /// Upserts an accepted referral as account (by domain), contact (by e-mail, when known) and
    /// opportunity (by referral id), linked, in one change set; returns the opportunity id.
    async fn upsert_opportunity(
        &self,
        opportunity: &OpportunityRecords,
    ) -> Result<String, DataverseError>;

    /// How many pushes may run at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// One record of an accepted referral: its table, alternate-key value, columns and links.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub entity_set: String,
    pub key: String,
    pub record: Map<String, Value>,
    /// Navigation property to the account, if this record links to it.
    pub account_link: Option<String>,
    /// Navigation property to the contact, if this record links to it.
    pub contact_link: Option<String>,
}

impl Table {
    pub fn new(mapping: &TableMapping, key: String, record: Map<String, Value>) -> Self {
        Self {
            entity_set: mapping.entity_set.clone(),
            key,
            record,
            account_link: mapping.account_link.clone(),
            contact_link: mapping.contact_link.clone(),
        }
    }
}

/// The Dataverse records of an accepted referral.
#[derive(Debug, Clone, PartialEq)]
pub struct OpportunityRecords {
    pub account: Table,
    pub contact: Option<Table>,
    pub opportunity: Table,
}

/// [`LeadSink`] in Dataverse, with the mapping's entity set and key column.
#[derive(Debug)]
pub struct DataverseLeadSink {
    client: DataverseClient,
    entity_set: String,
    key_column: String,
}

impl DataverseLeadSink {
    pub fn new(client: DataverseClient, mapping: &DynamicsMapping) -> Self {
        Self {
            client,
            entity_set: mapping.entity_set().to_owned(),
            key_column: mapping.key_column().to_owned(),
        }
    }

    /// On a first push, keys a record made by hand for `domain` (website or e-mail domain);
    /// true when one was taken over.
    async fn adopt(&self, key: &str, domain: &str) -> Result<bool, DataverseError> {
        let existing = self
            .client
            .find_by_domain(&self.entity_set, &self.key_column, domain)
            .await?;
        match existing.filter(|e| e.key.is_none()) {
            Some(existing) => {
                self.client
                    .link_key(&self.entity_set, &existing.id, &self.key_column, key)
                    .await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Pushes at once before Dataverse has named its degree of parallelism (`x-ms-dop-hint`).
const DEFAULT_CONCURRENCY: usize = 4;

#[async_trait]
impl LeadSink for DataverseLeadSink {
    /// Dataverse's `x-ms-dop-hint` (at most 16).
    fn concurrency(&self) -> usize {
        self.client
            .dop_hint()
            .map_or(DEFAULT_CONCURRENCY, |hint| {
                usize::try_from(hint).unwrap_or(1)
            })
            .clamp(1, 16)
    }

    async fn upsert_lead(
        &self,
        key: &str,
        domain: &str,
        record: &Map<String, Value>,
        adopt: bool,
    ) -> Result<PushedLead, DataverseError> {
        let adopted = adopt && self.adopt(key, domain).await?;
        let result = self
            .client
            .upsert_by_key(&self.entity_set, &self.key_column, key, record)
            .await?;
        Ok(PushedLead::of(result, adopted))
    }

    /// Adoption lookups first (concurrently, as the dop hint allows), then the upserts in
    /// `$batch` requests of at most [`MAX_BATCH_ITEMS`], each lead its own change set, so one
    /// refused lead does not undo the others. A single lead is upserted without a `$batch`; a
    /// `$batch` refused as a whole for a reason retrying cannot fix is done lead by lead.
    async fn upsert_leads(&self, leads: &[LeadUpsert]) -> Vec<Result<PushedLead, DataverseError>> {
        if let [lead] = leads {
            return vec![
                self.upsert_lead(&lead.key, &lead.domain, &lead.record, lead.adopt)
                    .await,
            ];
        }
        let adoptions: Vec<Result<bool, DataverseError>> =
            futures_util::stream::iter(0..leads.len())
                .map(|i| async move {
                    let lead = &leads[i];
                    match lead.adopt {
                        true => self.adopt(&lead.key, &lead.domain).await,
                        false => Ok(false),
                    }
                })
                .buffered(self.concurrency())
                .collect()
                .await;
        let mut results: Vec<Option<Result<PushedLead, DataverseError>>> =
            adoptions.iter().map(|a| a.clone().err().map(Err)).collect();
        let ready: Vec<usize> = (0..leads.len()).filter(|&i| results[i].is_none()).collect();
        for chunk in ready.chunks(MAX_BATCH_ITEMS) {
            let items: Vec<(String, Map<String, Value>)> = chunk
                .iter()
                .map(|&i| (leads[i].key.clone(), leads[i].record.clone()))
                .collect();
            match self
                .client
                .batch_upsert(&self.entity_set, &self.key_column, &items)
                .await
            {
                Ok(answers) => {
                    for (&i, answer) in chunk.iter().zip(answers) {
                        let adopted = matches!(adoptions[i], Ok(true));
                        results[i] = Some(answer.map(|r| PushedLead::of(r, adopted)));
                    }
                }
                Err(err) if err.is_retryable() => {
                    for &i in chunk {
                        results[i] = Some(Err(err.clone()));
                    }
                }
                // Refused or unreadable as a whole, which says nothing of any one lead: each is
                // upserted on its own (idempotent), so only a lead at fault fails.
                Err(err) => {
                    tracing::warn!(event = "dataverse_batch_refused", error = %err, leads = chunk.len());
                    for &i in chunk {
                        let adopted = matches!(adoptions[i], Ok(true));
                        let lead = &leads[i];
                        results[i] = Some(
                            self.client
                                .upsert_by_key(
                                    &self.entity_set,
                                    &self.key_column,
                                    &lead.key,
                                    &lead.record,
                                )
                                .await
                                .map(|r| PushedLead::of(r, adopted)),
                        );
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(DataverseError::InvalidResponse(
                        "lead left out of the $batch".to_owned(),
                        None,
                    ))
                })
            })
            .collect()
    }

    async fn upsert_opportunity(
        &self,
        records: &OpportunityRecords,
    ) -> Result<String, DataverseError> {
        // Content-IDs: $1 the account, $2 the contact (when there is one), last the opportunity.
        let keyed = |table: &Table, contact_id: Option<&str>| {
            let mut record = table.record.clone();
            if let Some(link) = &table.account_link {
                record.insert(format!("{link}@odata.bind"), Value::from("$1"));
            }
            if let (Some(link), Some(id)) = (&table.contact_link, contact_id) {
                record.insert(format!("{link}@odata.bind"), Value::from(id));
            }
            KeyedRecord {
                entity_set: table.entity_set.clone(),
                key_column: self.key_column.clone(),
                key_value: table.key.clone(),
                record,
            }
        };
        let mut items = vec![keyed(&records.account, None)];
        let mut contact_id = None;
        if let Some(contact) = &records.contact {
            items.push(keyed(contact, None));
            contact_id = Some("$2");
        }
        items.push(keyed(&records.opportunity, contact_id));
        let results = self.client.upsert_change_set(&items).await?;
        results.last().map(|r| r.id.clone()).ok_or_else(|| {
            DataverseError::InvalidResponse("empty change set answer".to_owned(), None)
        })
    }
}
