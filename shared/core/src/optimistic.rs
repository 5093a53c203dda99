//! Read, change, write with the version read, and again while another writer gets in between:
//! the one way leads and sync state are updated.

use async_trait::async_trait;
use hunter_domain::leads::LeadWithReferral;
use hunter_domain::model::{Lead, SyncState};
use hunter_domain::rules::Domain;
use serde_json::Value;

use crate::ports::{LeadStore, StoreError, SyncStore};

/// Attempts before an update gives up with [`StoreError::Conflict`] (retryable).
const ATTEMPTS: u32 = 5;

/// What a change makes of the item it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T, R> {
    /// Write this (its version is set by the update), then answer `R`.
    Write(T, R),
    /// Write nothing; answer `R`.
    Keep(R),
}

impl<T, R> Change<T, R> {
    /// The same decision about what `into` makes of the item.
    fn map_item<U>(self, into: impl FnOnce(T) -> U) -> Change<U, R> {
        match self {
            Self::Write(item, answer) => Change::Write(into(item), answer),
            Self::Keep(answer) => Change::Keep(answer),
        }
    }
}

/// Reads the lead of `domain`, lets `change` decide what to make of it (`None`: no lead yet), and
/// writes the decision under a check of the version read. When another writer got in between,
/// reads and decides again.
pub async fn update_lead<S, R>(
    store: &S,
    domain: &Domain,
    mut change: impl FnMut(Option<Lead>) -> Change<Lead, R> + Send,
) -> Result<R, StoreError>
where
    S: LeadStore + ?Sized,
    R: Send,
{
    update(
        &LeadSlot::new(store, domain, None),
        |stored: Option<LeadWithReferral>| {
            change(stored.map(|joined| joined.lead)).map_item(|lead| LeadWithReferral {
                lead,
                contribution: None,
            })
        },
    )
    .await
}

/// [`update_lead`] for a referral joining the lead of `domain`: `change` sees the lead with the
/// referral's stored contribution, and what it writes is written together.
pub async fn update_lead_with_referral<S, R>(
    store: &S,
    domain: &Domain,
    referral_id: &str,
    change: impl FnMut(Option<LeadWithReferral>) -> Change<LeadWithReferral, R> + Send,
) -> Result<R, StoreError>
where
    S: LeadStore + ?Sized,
    R: Send,
{
    update(&LeadSlot::new(store, domain, Some(referral_id)), change).await
}

/// [`update_lead`] for the sync state under `key`: `change` sees the stored value and decides
/// the new one.
pub async fn update_state<S, R>(
    store: &S,
    key: &str,
    mut change: impl FnMut(Option<&Value>) -> Change<Value, R> + Send,
) -> Result<R, StoreError>
where
    S: SyncStore + ?Sized,
    R: Send,
{
    update(&StateSlot { store, key }, |stored: Option<SyncState>| {
        change(stored.as_ref().map(|s| &s.value)).map_item(|value| SyncState {
            key: key.to_owned(),
            value,
            version: 0,
            updated_at: hunter_domain::clock::now(),
        })
    })
    .await
}

/// One item written with an optimistic version counter.
#[async_trait]
trait Slot: Sync {
    type Item: Send;
    async fn read(&self) -> Result<Option<Self::Item>, StoreError>;
    async fn write(&self, item: &Self::Item, expected: Option<u64>) -> Result<(), StoreError>;
    fn version(item: &Self::Item) -> u64;
    fn set_version(item: &mut Self::Item, version: u64);
    fn name(&self) -> String;
}

async fn update<S: Slot, R: Send>(
    slot: &S,
    mut change: impl FnMut(Option<S::Item>) -> Change<S::Item, R> + Send,
) -> Result<R, StoreError> {
    for _ in 0..ATTEMPTS {
        let stored = slot.read().await?;
        let expected = stored.as_ref().map(S::version);
        let (mut item, answer) = match change(stored) {
            Change::Keep(answer) => return Ok(answer),
            Change::Write(item, answer) => (item, answer),
        };
        S::set_version(&mut item, expected.map_or(1, |v| v + 1));
        match slot.write(&item, expected).await {
            Ok(()) => return Ok(answer),
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(StoreError::Conflict(format!(
        "{} kept changing",
        slot.name()
    )))
}

/// A lead, with the contribution of `referral_id` when one is named.
struct LeadSlot<'a, S: ?Sized> {
    store: &'a S,
    domain: &'a Domain,
    referral_id: Option<&'a str>,
}

impl<'a, S: ?Sized> LeadSlot<'a, S> {
    fn new(store: &'a S, domain: &'a Domain, referral_id: Option<&'a str>) -> Self {
        Self {
            store,
            domain,
            referral_id,
        }
    }
}

#[async_trait]
impl<S: LeadStore + ?Sized> Slot for LeadSlot<'_, S> {
    type Item = LeadWithReferral;

    async fn read(&self) -> Result<Option<LeadWithReferral>, StoreError> {
        let Some(lead) = self.store.get_lead(self.domain).await? else {
            return Ok(None);
        };
        let contribution = match self.referral_id {
            Some(id) => self.store.get_contribution(self.domain, id).await?,
            None => None,
        };
        Ok(Some(LeadWithReferral { lead, contribution }))
    }

    async fn write(
        &self,
        item: &LeadWithReferral,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.store
            .put_lead(&item.lead, expected, item.contribution.as_ref())
            .await
    }

    fn version(item: &LeadWithReferral) -> u64 {
        item.lead.version
    }

    fn set_version(item: &mut LeadWithReferral, version: u64) {
        item.lead.version = version;
    }

    fn name(&self) -> String {
        format!("lead {}", self.domain)
    }
}

struct StateSlot<'a, S: ?Sized> {
    store: &'a S,
    key: &'a str,
}

#[async_trait]
impl<S: SyncStore + ?Sized> Slot for StateSlot<'_, S> {
    type Item = SyncState;

    async fn read(&self) -> Result<Option<SyncState>, StoreError> {
        self.store.get_state(self.key).await
    }

    async fn write(&self, state: &SyncState, expected: Option<u64>) -> Result<(), StoreError> {
        self.store.put_state(state, expected).await
    }

    fn version(state: &SyncState) -> u64 {
        state.version
    }

    fn set_version(state: &mut SyncState, version: u64) {
        state.version = version;
    }

    fn name(&self) -> String {
        format!("sync state {}", self.key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use hunter_domain::model::LeadReferral;
    use hunter_domain::rules::normalize_domain;

    use super::*;
    use crate::adapters::EmbeddedStore;

    fn contoso() -> Domain {
        normalize_domain("contoso.com").unwrap()
    }

    #[tokio::test]
    async fn when_nothing_is_stored_should_create_it_at_version_1() {
        let store = EmbeddedStore::new();
        let answer = update_lead(&store, &contoso(), |stored| {
            assert!(stored.is_none());
            Change::Write(Lead::new(contoso(), hunter_domain::clock::now()), "made")
        })
        .await
        .unwrap();
        assert_eq!(answer, "made");
        assert_eq!(
            store.get_lead(&contoso()).await.unwrap().unwrap().version,
            1
        );
    }

    #[tokio::test]
    async fn when_another_writer_gets_in_between_should_decide_again_on_what_it_wrote() {
        let store = Contended::default();
        store
            .inner
            .put_lead(
                &Lead::new(contoso(), hunter_domain::clock::now()),
                None,
                None,
            )
            .await
            .unwrap();
        let calls = AtomicU32::new(0);
        let seen = update_lead(&store, &contoso(), |stored| {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut stored = stored.unwrap();
            let seen = stored.company_name.clone();
            stored.referral_count += 1;
            Change::Write(stored, seen)
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(seen.as_deref(), Some("Contoso (theirs)"));
        let written = store.get_lead(&contoso()).await.unwrap().unwrap();
        assert_eq!((written.version, written.referral_count), (3, 1));
    }

    #[tokio::test]
    async fn when_a_change_keeps_the_item_should_write_nothing() {
        let store = EmbeddedStore::new();
        let answer = update_state(&store, "k", |stored| {
            assert!(stored.is_none());
            Change::<Value, _>::Keep(7)
        })
        .await
        .unwrap();
        assert_eq!(answer, 7);
        assert!(store.get_state("k").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn when_state_is_updated_should_bump_its_version_each_time() {
        let store = EmbeddedStore::new();
        for n in 1..=3u64 {
            update_state(&store, "k", |_| Change::Write(Value::from(n), ()))
                .await
                .unwrap();
        }
        let state = store.get_state("k").await.unwrap().unwrap();
        assert_eq!((state.version, state.value), (3, Value::from(3)));
    }

    /// The embedded store with other writers around its lead writes: `Theirs` writes a lead of
    /// its own before the first write of ours; `AlwaysLose` makes every write of ours lose.
    #[derive(Debug, Default)]
    struct Contended {
        inner: EmbeddedStore,
        writes: AtomicU32,
        always_lose: bool,
    }

    #[async_trait]
    impl LeadStore for Contended {
        async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError> {
            self.inner.get_lead(domain).await
        }
        async fn put_lead(
            &self,
            lead: &Lead,
            expected: Option<u64>,
            contribution: Option<&LeadReferral>,
        ) -> Result<(), StoreError> {
            if self.always_lose {
                return Err(StoreError::Conflict("another writer won".to_owned()));
            }
            if self.writes.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut theirs = Lead::new(contoso(), hunter_domain::clock::now());
                theirs.company_name = Some("Contoso (theirs)".to_owned());
                theirs.version = 2;
                self.inner.put_lead(&theirs, Some(1), None).await?;
            }
            self.inner.put_lead(lead, expected, contribution).await
        }
        async fn get_contribution(
            &self,
            domain: &Domain,
            referral_id: &str,
        ) -> Result<Option<LeadReferral>, StoreError> {
            self.inner.get_contribution(domain, referral_id).await
        }
        async fn list_contributions(
            &self,
            domain: &Domain,
            limit: Option<usize>,
            cursor: Option<&str>,
        ) -> Result<crate::ports::Page<LeadReferral>, StoreError> {
            self.inner.list_contributions(domain, limit, cursor).await
        }
        async fn list_leads(
            &self,
            q: &crate::ports::LeadQuery,
        ) -> Result<crate::ports::Page<Lead>, StoreError> {
            self.inner.list_leads(q).await
        }
        async fn lead_stats(&self) -> Result<hunter_domain::stats::LeadStats, StoreError> {
            self.inner.lead_stats().await
        }
        async fn append_audit(
            &self,
            e: &hunter_domain::model::AuditEntry,
        ) -> Result<(), StoreError> {
            self.inner.append_audit(e).await
        }
        async fn list_audit(
            &self,
            d: &Domain,
            limit: usize,
        ) -> Result<Vec<hunter_domain::model::AuditEntry>, StoreError> {
            self.inner.list_audit(d, limit).await
        }
    }

    #[tokio::test]
    async fn when_every_write_loses_should_give_up_with_a_retryable_conflict() {
        let store = Contended {
            always_lose: true,
            ..Contended::default()
        };
        let attempts = AtomicU32::new(0);
        let err = update_lead(&store, &contoso(), |_| {
            attempts.fetch_add(1, Ordering::SeqCst);
            Change::Write(Lead::new(contoso(), hunter_domain::clock::now()), ())
        })
        .await
        .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), ATTEMPTS);
        assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("contoso.com")));
        assert!(err.is_retryable());
    }
}
