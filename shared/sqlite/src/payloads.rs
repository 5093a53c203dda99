//! The payload port ([`PayloadStore`]) on SQLite: whole texts by key in their own table, created
//! when first used (so a database file of schema version 1 needs no migration for it).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use hunter_core::ports::{PayloadStore, StoreError};

use crate::db::DbError;
use crate::store::SqliteStore;

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS payloads (key TEXT PRIMARY KEY NOT NULL, text TEXT NOT NULL)";

fn ensure_table(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(CREATE)?;
    Ok(())
}

#[async_trait]
impl PayloadStore for SqliteStore {
    async fn put_payload(&self, key: &str, text: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        let text = text.to_owned();
        Ok(self
            .db()
            .run(move |conn| {
                ensure_table(conn)?;
                conn.prepare_cached("INSERT OR REPLACE INTO payloads (key, text) VALUES (?1, ?2)")?
                    .execute(params![key, text])?;
                Ok(())
            })
            .await?)
    }

    async fn get_payload(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        Ok(self
            .db()
            .run(move |conn| {
                ensure_table(conn)?;
                Ok(conn
                    .prepare_cached("SELECT text FROM payloads WHERE key = ?1")?
                    .query_row([&key], |row| row.get::<_, String>(0))
                    .optional()?)
            })
            .await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SqliteDb;

    #[tokio::test]
    async fn a_payload_is_kept_whole_and_replaced_by_key_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hunter.db");
        let store = SqliteStore::new(SqliteDb::open(&path).unwrap());
        assert_eq!(store.get_payload("r1").await.unwrap(), None);
        let large = "ü€".repeat(200_000);
        store.put_payload("r1", "first").await.unwrap();
        store.put_payload("r1", &large).await.unwrap();
        drop(store);
        let reopened = SqliteStore::new(SqliteDb::open(&path).unwrap());
        assert_eq!(reopened.get_payload("r1").await.unwrap(), Some(large));
    }
}
