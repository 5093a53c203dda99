//! The port push-dynamics writes leads through, and its Dataverse adapter.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::client::{DataverseClient, KeyedRecord};
use super::error::DataverseError;
use super::mapping::DynamicsMapping;

/// What a push did in Dynamics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedLead {
    /// The Dataverse row id.
    pub id: String,
    pub created: bool,
    /// A record made by hand for the domain was taken over (keyed) instead of creating another.
    pub adopted: bool,
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

/// The Dataverse records of an accepted referral (keys are the alternate-key values).
#[derive(Debug, Clone, PartialEq)]
pub struct OpportunityRecords {
    pub account_key: String,
    pub account: Map<String, Value>,
    pub contact: Option<(String, Map<String, Value>)>,
    pub opportunity_key: String,
    pub opportunity: Map<String, Value>,
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
        let mut adopted = false;
        if adopt {
            let existing = self
                .client
                .find_by_domain(&self.entity_set, &self.key_column, domain)
                .await?;
            if let Some(existing) = existing.filter(|e| e.key.is_none()) {
                self.client
                    .link_key(&self.entity_set, &existing.id, &self.key_column, key)
                    .await?;
                adopted = true;
            }
        }
        let result = self
            .client
            .upsert_by_key(&self.entity_set, &self.key_column, key, record)
            .await?;
        Ok(PushedLead {
            id: result.id,
            created: result.created && !adopted,
            adopted,
        })
    }

    async fn upsert_opportunity(
        &self,
        records: &OpportunityRecords,
    ) -> Result<String, DataverseError> {
        let keyed = |set: &str, key: &str, record: Map<String, Value>| KeyedRecord {
            entity_set: set.to_owned(),
            key_column: self.key_column.clone(),
            key_value: key.to_owned(),
            record,
        };
        let mut items = vec![keyed(
            "accounts",
            &records.account_key,
            records.account.clone(),
        )];
        let mut opportunity = records.opportunity.clone();
        opportunity.insert(
            "customerid_account@odata.bind".to_owned(),
            Value::from("$1"),
        );
        if let Some((key, contact)) = &records.contact {
            let mut contact = contact.clone();
            contact.insert(
                "parentcustomerid_account@odata.bind".to_owned(),
                Value::from("$1"),
            );
            items.push(keyed("contacts", key, contact));
            opportunity.insert("parentcontactid@odata.bind".to_owned(), Value::from("$2"));
        }
        items.push(keyed(
            "opportunities",
            &records.opportunity_key,
            opportunity,
        ));
        let results = self.client.upsert_change_set(&items).await?;
        results.last().map(|r| r.id.clone()).ok_or_else(|| {
            DataverseError::InvalidResponse("empty change set answer".to_owned(), None)
        })
    }
}
