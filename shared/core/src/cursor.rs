//! The Partner Center sync cursor ([`SyncCursor`]) in the store's sync state, and the lease on
//! it that lets one invocation at a time work on the sync: taken with a conditional write of
//! the state ([`claim_sync`]), renewed on every page ([`renew_lease`]) and let go with the
//! invocation's outcome ([`release_sync`]).

use chrono::{DateTime, Utc};
use hunter_domain::clock;
use hunter_domain::sync_cursor::{Claim, LeaseRequest, SYNC_STATE_KEY, SyncCursor};
use serde_json::Value;

use crate::optimistic::{Change, update_state};
use crate::ports::{StoreError, SyncStore};

/// The stored cursor (the default one when nothing is stored yet).
pub async fn load_cursor(store: &(impl SyncStore + ?Sized)) -> Result<SyncCursor, StoreError> {
    match store.get_state(SYNC_STATE_KEY).await? {
        None => Ok(SyncCursor::default()),
        Some(state) => read(&state.value),
    }
}

/// Writes `cursor` over whatever is stored; when another invocation wrote meanwhile, the later
/// watermark of both wins ([`SyncCursor::merged_over`]). Returns the stored watermark.
pub async fn save_cursor(
    store: &(impl SyncStore + ?Sized),
    cursor: SyncCursor,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let merge = |stored: Option<&Value>| {
        let stored = stored.map(read).transpose()?.unwrap_or_default();
        let merged = cursor.clone().merged_over(&stored);
        let value =
            serde_json::to_value(&merged).map_err(|e| StoreError::InvalidItem(e.to_string()))?;
        Ok((value, merged.watermark))
    };
    update_state(store, SYNC_STATE_KEY, |stored| match merge(stored) {
        Ok((value, watermark)) => Change::Write(value, Ok(watermark)),
        Err(err) => Change::Keep(Err(err)),
    })
    .await?
}

/// Claims the sync for `request.holder` ([`SyncCursor::claim`]): granted (and written) unless
/// another invocation holds a live lease.
pub async fn claim_sync(
    store: &(impl SyncStore + ?Sized),
    request: LeaseRequest,
) -> Result<Claim, StoreError> {
    let now = clock::now();
    update_state(store, SYNC_STATE_KEY, |stored| {
        let stored = match stored.map(read).transpose() {
            Ok(stored) => stored.unwrap_or_default(),
            Err(err) => return Change::Keep(Err(err)),
        };
        match stored.claim(request.clone(), now) {
            Claim::Granted(grant) => match to_value(&grant.cursor) {
                Ok(value) => Change::Write(value, Ok(Claim::Granted(grant))),
                Err(err) => Change::Keep(Err(err)),
            },
            held @ Claim::Held { .. } => Change::Keep(Ok(held)),
        }
    })
    .await?
}

/// Moves `holder`'s lease to `expires_at`; false when `holder` no longer holds it (it expired
/// and another invocation took the sync over).
pub async fn renew_lease(
    store: &(impl SyncStore + ?Sized),
    holder: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    update_state(store, SYNC_STATE_KEY, |stored| {
        let stored = match stored.map(read).transpose() {
            Ok(stored) => stored.unwrap_or_default(),
            Err(err) => return Change::Keep(Err(err)),
        };
        match stored.renewed(holder, expires_at).map(|c| to_value(&c)) {
            Some(Ok(value)) => Change::Write(value, Ok(true)),
            Some(Err(err)) => Change::Keep(Err(err)),
            None => Change::Keep(Ok(false)),
        }
    })
    .await?
}

/// Writes `outcome` (the cursor an invocation ends with) and lets go of `holder`'s lease
/// ([`SyncCursor::released_over`]). `Ok(None)` when `holder` no longer holds the lease: nothing
/// is written; else the stored watermark.
pub async fn release_sync(
    store: &(impl SyncStore + ?Sized),
    holder: &str,
    outcome: SyncCursor,
) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
    update_state(store, SYNC_STATE_KEY, |stored| {
        let stored = match stored.map(read).transpose() {
            Ok(stored) => stored.unwrap_or_default(),
            Err(err) => return Change::Keep(Err(err)),
        };
        match outcome.clone().released_over(&stored, holder) {
            Some(released) => match to_value(&released) {
                Ok(value) => Change::Write(value, Ok(Some(released.watermark))),
                Err(err) => Change::Keep(Err(err)),
            },
            None => Change::Keep(Ok(None)),
        }
    })
    .await?
}

fn to_value(cursor: &SyncCursor) -> Result<Value, StoreError> {
    serde_json::to_value(cursor).map_err(|e| StoreError::InvalidItem(e.to_string()))
}

fn read(value: &Value) -> Result<SyncCursor, StoreError> {
    serde_json::from_value(value.clone())
        .map_err(|e| StoreError::InvalidItem(format!("sync state {SYNC_STATE_KEY}: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use hunter_domain::model::SyncState;
    use hunter_domain::sync_cursor::Continuation;

    use super::*;
    use crate::adapters::EmbeddedStore;

    fn at(hour: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap())
    }

    #[tokio::test]
    async fn when_saved_and_loaded_should_round_trip_and_keep_the_later_watermark() {
        let store = EmbeddedStore::new();
        assert_eq!(load_cursor(&store).await.unwrap(), SyncCursor::default());
        let later = SyncCursor {
            watermark: at(9),
            continuation: None,
            lease: None,
        };
        assert_eq!(save_cursor(&store, later.clone()).await.unwrap(), at(9));
        let stale = SyncCursor {
            watermark: at(5),
            continuation: Some(Continuation {
                run_id: "r".into(),
                next_link: "l".into(),
                max_updated: None,
                recorded_invalid: 0,
            }),
            lease: None,
        };
        assert_eq!(
            save_cursor(&store, stale.clone()).await.unwrap(),
            at(9),
            "a watermark never moves back"
        );
        let loaded = load_cursor(&store).await.unwrap();
        assert_eq!(loaded.watermark, at(9));
        assert_eq!(loaded.continuation, stale.continuation);
    }

    fn request(holder: &str) -> LeaseRequest {
        LeaseRequest {
            holder: holder.to_owned(),
            new_run_id: format!("run-{holder}"),
            expires_at: clock::now() + chrono::Duration::minutes(15),
        }
    }

    #[tokio::test]
    async fn when_two_invocations_claim_the_sync_at_once_should_grant_it_to_one() {
        let store = EmbeddedStore::new();
        let (a, b) = tokio::join!(
            claim_sync(&store, request("a")),
            claim_sync(&store, request("b"))
        );
        let granted = [&a, &b]
            .iter()
            .filter(|c| matches!(c, Ok(Claim::Granted(_))))
            .count();
        assert_eq!(granted, 1, "{a:?} {b:?}");
        match b.unwrap() {
            Claim::Held { lease, .. } => assert_eq!(lease.run_id, "run-a"),
            other => panic!("{other:?}"),
        }
        // Renewed by its holder only; let go with the outcome, after which anyone may claim.
        assert!(renew_lease(&store, "a", clock::now()).await.unwrap());
        assert!(!renew_lease(&store, "b", clock::now()).await.unwrap());
        let outcome = load_cursor(&store)
            .await
            .unwrap()
            .completed(at(9), clock::now());
        assert_eq!(
            release_sync(&store, "b", outcome.clone()).await.unwrap(),
            None,
            "not b's to let go"
        );
        assert_eq!(
            release_sync(&store, "a", outcome).await.unwrap(),
            Some(at(9))
        );
        assert_eq!(load_cursor(&store).await.unwrap().lease, None);
        assert!(matches!(
            claim_sync(&store, request("b")).await.unwrap(),
            Claim::Granted(_)
        ));
    }

    #[tokio::test]
    async fn when_the_stored_cursor_is_unreadable_should_say_so_and_leave_it() {
        let store = EmbeddedStore::new();
        let garbage = SyncState {
            key: SYNC_STATE_KEY.to_owned(),
            value: serde_json::json!({"watermark": 42}),
            version: 1,
            updated_at: Utc::now(),
        };
        store.put_state(&garbage, None).await.unwrap();
        assert!(matches!(
            load_cursor(&store).await,
            Err(StoreError::InvalidItem(_))
        ));
        assert!(matches!(
            save_cursor(&store, SyncCursor::default()).await,
            Err(StoreError::InvalidItem(_))
        ));
        assert_eq!(
            store
                .get_state(SYNC_STATE_KEY)
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );
    }
}
