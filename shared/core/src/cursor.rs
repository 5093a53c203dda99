//! The Partner Center sync cursor ([`SyncCursor`]) in the store's sync state.

use chrono::{DateTime, Utc};
use hunter_domain::sync_cursor::{SYNC_STATE_KEY, SyncCursor};
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
