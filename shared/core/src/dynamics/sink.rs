//! [`LeadSink`] in Dataverse: leads upserted by alternate key (several at once in `$batch`),
//! hand-made records adopted on a lead's first push, accepted referrals as opportunities.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use hunter_domain::crm::{DynamicsMapping, OpportunityRecords, Table};
use serde_json::{Map, Value};

use super::client::{DataverseClient, KeyedRecord, MAX_BATCH_ITEMS, UpsertResult};
use super::error::DataverseError;
use crate::ports::{LeadSink, LeadUpsert, PushedLead, SinkError};

/// Pushes at once before Dataverse has named its degree of parallelism (`x-ms-dop-hint`).
const DEFAULT_CONCURRENCY: usize = 4;

/// [`LeadSink`] in Dataverse, with the mapping's entity set and key column.
#[derive(Debug)]
pub struct DataverseLeadSink {
    client: Arc<DataverseClient>,
    entity_set: String,
    key_column: String,
}

/// The push that answered `result`; an adopted record was not created by it.
fn pushed(result: UpsertResult, adopted: bool) -> PushedLead {
    PushedLead {
        id: result.id,
        created: result.created && !adopted,
        adopted,
    }
}

impl DataverseLeadSink {
    pub fn new(client: impl Into<Arc<DataverseClient>>, mapping: &DynamicsMapping) -> Self {
        Self {
            client: client.into(),
            entity_set: mapping.entity_set().to_owned(),
            key_column: mapping.key_column().to_owned(),
        }
    }

    /// The client pushes go through (shared with the pull of CRM changes, so both are paced
    /// together for the same application users).
    pub fn client(&self) -> &Arc<DataverseClient> {
        &self.client
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

    async fn upsert_one(
        &self,
        lead: &LeadUpsert,
        adopted: bool,
    ) -> Result<PushedLead, DataverseError> {
        let result = self
            .client
            .upsert_by_key(&self.entity_set, &self.key_column, &lead.key, &lead.record)
            .await?;
        Ok(pushed(result, adopted))
    }

    /// Adoption lookups first (concurrently, as the dop hint allows), then the upserts in
    /// `$batch` requests of at most [`MAX_BATCH_ITEMS`], each lead its own change set, so one
    /// refused lead does not undo the others. A `$batch` refused as a whole for a reason retrying
    /// cannot fix is done lead by lead.
    async fn upsert_batched(
        &self,
        leads: &[LeadUpsert],
    ) -> Vec<Result<PushedLead, DataverseError>> {
        let adoptions: Vec<Result<bool, DataverseError>> =
            // By index: a closure over `&LeadUpsert` is not general enough for a Send future.
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
        let adopted = |i: usize| matches!(adoptions[i], Ok(true));
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
                        results[i] = Some(answer.map(|r| pushed(r, adopted(i))));
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
                        results[i] = Some(self.upsert_one(&leads[i], adopted(i)).await);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(DataverseError::InvalidResponse {
                        service: "Dataverse",
                        message: "lead left out of the $batch".to_owned(),
                        request_id: None,
                    })
                })
            })
            .collect()
    }
}

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

    async fn upsert_lead(&self, lead: &LeadUpsert) -> Result<PushedLead, SinkError> {
        let adopted = lead.adopt && self.adopt(&lead.key, &lead.domain).await?;
        Ok(self.upsert_one(lead, adopted).await?)
    }

    /// A single lead is upserted without a `$batch`; several in `$batch` requests.
    async fn upsert_leads(&self, leads: &[LeadUpsert]) -> Vec<Result<PushedLead, SinkError>> {
        if let [lead] = leads {
            return vec![self.upsert_lead(lead).await];
        }
        self.upsert_batched(leads)
            .await
            .into_iter()
            .map(|r| r.map_err(SinkError::from))
            .collect()
    }

    async fn upsert_opportunity(&self, records: &OpportunityRecords) -> Result<String, SinkError> {
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
        Ok(results
            .last()
            .map(|r| r.id.clone())
            .ok_or_else(|| DataverseError::InvalidResponse {
                service: "Dataverse",
                message: "empty change set answer".to_owned(),
                request_id: None,
            })?)
    }
}
