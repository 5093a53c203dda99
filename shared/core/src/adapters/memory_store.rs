//! The embedded store: everything in memory, with the DynamoDB adapter's semantics
//! (conditional writes, versions, ordering, opaque cursors).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::keys::{
    audit_sort_key, decode_cursor, encode_cursor, lead_order_key, page_by_key, referral_sort_key,
    run_sort_key,
};
use super::lz4_text;
use crate::ports::{FailureStore, MessageFailure, PayloadStore, RunCount, StoreError};
use crate::ports::{
    LeadQuery, LeadStore, Page, ReferralQuery, ReferralStore, SyncStore, UpsertOutcome, page_size,
};
use hunter_domain::model::{AuditEntry, Lead, LeadReferral, ReferralRecord, SyncRun, SyncState};
use hunter_domain::rules::Domain;
use hunter_domain::stats::LeadStats;

/// In-memory [`crate::ports::Store`] for local mode and tests.
#[derive(Debug, Default)]
pub struct EmbeddedStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed: a record is ~640 bytes, and the table (twice as many slots as records at worst,
    /// two tables while it grows) holds pointers instead.
    referrals: HashMap<String, Box<PackedRecord>>,
    /// What payloads are compressed against: the first one stored (see [`PackedRecord`]).
    dictionary: Vec<u8>,
    leads: HashMap<Domain, Lead>,
    /// Each lead's contributions, by referral id.
    contributions: HashMap<Domain, BTreeMap<String, LeadReferral>>,
    audit: HashMap<Domain, Vec<AuditEntry>>,
    runs: HashMap<String, SyncRun>,
    states: HashMap<String, SyncState>,
    /// (run id, referral id) pairs already counted by `count_ingested`.
    counted: HashSet<(String, String)>,
    /// The last failure of each message, by (queue, message id).
    failures: HashMap<(String, String), MessageFailure>,
    payloads: HashMap<String, String>,
}

/// A referral record as the store keeps it: the payload text (~2 KB, most of a record)
/// compressed with LZ4 against the store's dictionary, the first payload it kept. Referrals
/// share their keys and most of their shape, so each shrinks to about a third; reading one back
/// takes a microsecond or two.
#[derive(Debug)]
struct PackedRecord {
    /// The record, `raw` left empty.
    record: ReferralRecord,
    raw: Box<[u8]>,
}

/// Payloads longer than this are compressed against their first this many bytes only.
const DICTIONARY_BYTES: usize = 16 * 1024;

impl PackedRecord {
    fn pack(mut record: ReferralRecord, dictionary: &[u8]) -> Self {
        let text = std::mem::take(&mut record.raw);
        let mut raw = Vec::new();
        lz4_text::pack_into(&mut raw, &text, dictionary);
        Self {
            record,
            raw: raw.into_boxed_slice(),
        }
    }

    fn unpack(&self, dictionary: &[u8]) -> Result<ReferralRecord, StoreError> {
        let raw = lz4_text::unpack(&self.raw, dictionary).map_err(|e| {
            StoreError::InvalidItem(format!(
                "referral {}: the stored payload cannot be unpacked: {e}",
                self.record.id
            ))
        })?;
        Ok(ReferralRecord {
            raw,
            ..self.record.clone()
        })
    }
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written map: every write is one insert.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sorts `keyed` newest (greatest key) first and cuts the page after `cursor`.
fn page_desc<T>(
    keyed: Vec<(String, T)>,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<T>, StoreError> {
    page_by_key(keyed, true, cursor, limit)
}

/// Whether a referral passes a query's filters.
pub fn referral_matches(q: &ReferralQuery, r: &ReferralRecord) -> bool {
    q.status
        .as_ref()
        .is_none_or(|s| r.status.as_ref() == Some(s))
        && q.substatus
            .as_ref()
            .is_none_or(|s| r.substatus.as_ref() == Some(s))
        && q.eligible.is_none_or(|e| r.eligible == e)
        && q.skip_reason.is_none_or(|s| r.skip_reason == Some(s))
        && q.q
            .as_ref()
            .is_none_or(|text| r.search_text().contains(&text.to_lowercase()))
}

/// Whether a lead passes a query's filters.
pub fn lead_matches(q: &LeadQuery, l: &Lead) -> bool {
    q.segment.is_none_or(|s| l.segment == Some(s))
        && (q.priority_categories.is_empty()
            || l.priority_category
                .is_some_and(|c| q.priority_categories.contains(&c)))
        && q.scan_state.is_none_or(|s| l.scan_state == s)
        && q.provider
            .as_ref()
            .is_none_or(|p| l.provider.as_ref() == Some(p))
        && q.min_score.is_none_or(|m| l.score.unwrap_or(0) >= m)
        && q.sync_status.is_none_or(|s| l.sync_status == s)
        && q.q
            .as_ref()
            .is_none_or(|text| l.search_text().contains(&text.to_lowercase()))
}

fn check_version(stored: Option<u64>, expected: Option<u64>, what: &str) -> Result<(), StoreError> {
    if stored == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{what}: stored version {stored:?}, expected {expected:?}"
        )))
    }
}

#[async_trait]
impl ReferralStore for EmbeddedStore {
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError> {
        let mut inner = self.lock();
        let stored = inner.referrals.get(&record.id).map(|r| r.record.version());
        let outcome = UpsertOutcome::of(&record.version(), stored.as_ref());
        if outcome.writes() {
            if inner.dictionary.is_empty() {
                let first = record.raw.as_bytes();
                inner.dictionary = first[..first.len().min(DICTIONARY_BYTES)].to_vec();
            }
            let packed = PackedRecord::pack(record.clone(), &inner.dictionary);
            inner.referrals.insert(record.id.clone(), Box::new(packed));
        }
        Ok(outcome)
    }

    async fn get_referral(&self, id: &str) -> Result<Option<ReferralRecord>, StoreError> {
        let inner = self.lock();
        inner
            .referrals
            .get(id)
            .map(|r| r.unpack(&inner.dictionary))
            .transpose()
    }

    async fn list_referrals(
        &self,
        query: &ReferralQuery,
    ) -> Result<Page<ReferralRecord>, StoreError> {
        let inner = self.lock();
        let keyed = inner
            .referrals
            .values()
            .filter(|r| referral_matches(query, &r.record))
            .map(|r| Ok((referral_sort_key(&r.record), r.unpack(&inner.dictionary)?)))
            .collect::<Result<_, StoreError>>()?;
        drop(inner);
        page_desc(keyed, query.cursor.as_deref(), query.limit)
    }
}

#[async_trait]
impl LeadStore for EmbeddedStore {
    async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError> {
        Ok(self.lock().leads.get(domain).cloned())
    }

    async fn put_lead(
        &self,
        lead: &Lead,
        expected_version: Option<u64>,
        contribution: Option<&LeadReferral>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let stored = inner.leads.get(&lead.domain).map(|l| l.version);
        check_version(stored, expected_version, lead.domain.as_str())?;
        inner.leads.insert(lead.domain.clone(), lead.clone());
        if let Some(contribution) = contribution {
            inner
                .contributions
                .entry(lead.domain.clone())
                .or_default()
                .insert(contribution.id.clone(), contribution.clone());
        }
        Ok(())
    }

    async fn get_contribution(
        &self,
        domain: &Domain,
        referral_id: &str,
    ) -> Result<Option<LeadReferral>, StoreError> {
        Ok(self
            .lock()
            .contributions
            .get(domain)
            .and_then(|c| c.get(referral_id))
            .cloned())
    }

    async fn list_contributions(
        &self,
        domain: &Domain,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LeadReferral>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let inner = self.lock();
        let mut rest = inner
            .contributions
            .get(domain)
            .into_iter()
            .flat_map(|c| c.values())
            .filter(|c| after.as_ref().is_none_or(|a| c.id > *a));
        let items: Vec<LeadReferral> = rest.by_ref().take(page_size(limit)).cloned().collect();
        let next_cursor = match (rest.next(), items.last()) {
            (Some(_), Some(last)) => Some(encode_cursor(&last.id)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        let keyed = self
            .lock()
            .leads
            .values()
            .filter(|l| lead_matches(query, l))
            .map(|l| (lead_order_key(l, query.sort), l.clone()))
            .collect();
        let descending = query.sort.descending();
        page_by_key(keyed, descending, query.cursor.as_deref(), query.limit)
    }

    async fn lead_stats(&self) -> Result<LeadStats, StoreError> {
        Ok(LeadStats::of(self.lock().leads.values()))
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entries = inner.audit.entry(entry.domain.clone()).or_default();
        if entries.iter().any(|e| e.id == entry.id) {
            return Err(StoreError::Conflict(format!(
                "audit entry {} exists",
                entry.id
            )));
        }
        entries.push(entry.clone());
        Ok(())
    }

    async fn list_audit(
        &self,
        domain: &Domain,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let keyed = self
            .lock()
            .audit
            .get(domain)
            .into_iter()
            .flatten()
            .map(|a| (audit_sort_key(a), a.clone()))
            .collect();
        Ok(page_desc(keyed, None, Some(limit))?.items)
    }
}

#[async_trait]
impl SyncStore for EmbeddedStore {
    async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let mut run = run.clone();
        if let Some(stored) = inner.runs.get(&run.id) {
            run.stored = stored.stored;
            run.eligible = stored.eligible;
            run.skipped = stored.skipped.clone();
            run.outcomes = stored.outcomes.clone();
            run.summarized_at = stored.summarized_at;
        }
        inner.runs.insert(run.id.clone(), run);
        Ok(())
    }

    async fn count_ingested(&self, count: RunCount<'_>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(run) = inner.runs.get_mut(count.run_id) else {
            return Ok(false);
        };
        if !inner
            .counted
            .insert((count.run_id.to_owned(), count.referral_id.to_owned()))
        {
            return Ok(false);
        }
        run.add_ingested(count.outcome, count.skip_reason);
        Ok(true)
    }

    async fn claim_run_summary(&self, run_id: &str) -> Result<bool, StoreError> {
        match self.lock().runs.get_mut(run_id) {
            Some(run) if run.summarized_at.is_none() => {
                run.summarized_at = Some(hunter_domain::clock::now());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_sync_run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        Ok(self.lock().runs.get(id).cloned())
    }

    async fn list_sync_runs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError> {
        let keyed = self
            .lock()
            .runs
            .values()
            .map(|r| (run_sort_key(r), r.clone()))
            .collect();
        page_desc(keyed, cursor, limit)
    }

    async fn get_state(&self, key: &str) -> Result<Option<SyncState>, StoreError> {
        Ok(self.lock().states.get(key).cloned())
    }

    async fn put_state(
        &self,
        state: &SyncState,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let stored = inner.states.get(&state.key).map(|s| s.version);
        check_version(stored, expected_version, &state.key)?;
        inner.states.insert(state.key.clone(), state.clone());
        Ok(())
    }
}

#[async_trait]
impl FailureStore for EmbeddedStore {
    async fn record_failure(&self, failure: &MessageFailure) -> Result<(), StoreError> {
        self.lock().failures.insert(
            (failure.queue.clone(), failure.message_id.clone()),
            failure.clone(),
        );
        Ok(())
    }

    async fn get_failure(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<Option<MessageFailure>, StoreError> {
        Ok(self
            .lock()
            .failures
            .get(&(queue.to_owned(), message_id.to_owned()))
            .cloned())
    }
}

#[async_trait]
impl PayloadStore for EmbeddedStore {
    async fn put_payload(&self, key: &str, text: &str) -> Result<(), StoreError> {
        self.lock().payloads.insert(key.to_owned(), text.to_owned());
        Ok(())
    }

    async fn get_payload(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().payloads.get(key).cloned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(raw: &str) -> ReferralRecord {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "eligible": true, "syncedAt": "2026-11-01T00:00:00Z", "raw": raw,
        }))
        .unwrap()
    }

    fn payload(n: usize, name: &str) -> String {
        let contacts: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"email":"person{i}@{name}.example","firstName":"Ada","locale":"en-US"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"id":"{n}","status":"New","substatus":"Pending","customerProfile":{{"name":"{name}","team":[{}]}}}}"#,
            contacts.join(",")
        )
    }

    #[test]
    fn a_packed_payload_comes_back_exactly_and_one_of_the_same_shape_packs_small() {
        let dictionary = payload(20, "contoso").into_bytes();
        let large = "ü€".repeat(DICTIONARY_BYTES);
        let similar = payload(21, "fabrikam");
        for raw in [
            payload(20, "contoso"),
            similar.clone(),
            String::new(),
            "Bücher GmbH, 漢字 \u{0}".to_owned(),
            large,
        ] {
            let packed = PackedRecord::pack(record(&raw), &dictionary);
            assert!(packed.record.raw.is_empty());
            assert_eq!(packed.unpack(&dictionary).unwrap(), record(&raw));
        }
        let packed = PackedRecord::pack(record(&similar), &dictionary);
        assert!(
            packed.raw.len() * 3 < similar.len(),
            "{} of {} bytes",
            packed.raw.len(),
            similar.len()
        );
        let garbled = PackedRecord {
            raw: vec![0xff; 8].into_boxed_slice(),
            ..packed
        };
        assert!(matches!(
            garbled.unpack(&dictionary),
            Err(StoreError::InvalidItem(_))
        ));
    }
}
