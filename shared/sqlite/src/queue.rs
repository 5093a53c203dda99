//! The queue port on SQLite, with the semantics of SQS and the in-memory queue: batch limits,
//! visibility timeout, receive count, dead-letter queue after maxReceiveCount, redrive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, params};

use hunter_core::adapters::memory_queue::{MAX_BATCH_ENTRIES, check_batch};
use hunter_core::ports::{
    OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage, SendFailure,
};

use crate::db::{DbError, SqliteDb, Tx};
use crate::packed::{StoredText, pack};

/// How often a waiting `receive` looks again (without holding the connection in between).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One named queue and its dead-letter queue in a [`SqliteDb`] (several share one file).
/// Visibility deadlines are wall-clock times, so they hold across restarts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: SqliteDb,
    name: String,
    default_visibility: Duration,
    max_receive_count: u32,
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A message moved to the dead-letter queue by a receive.
struct DeadLettered {
    id: String,
    receive_count: u32,
}

impl SqliteQueue {
    /// Queue `name` in `db`, whose messages move to its dead-letter queue once a message that
    /// was received `max_receive_count` times becomes visible again.
    pub fn new(
        db: SqliteDb,
        name: &str,
        default_visibility: Duration,
        max_receive_count: u32,
    ) -> Self {
        Self {
            db,
            name: name.to_owned(),
            default_visibility,
            max_receive_count,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn with<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, DbError> + Send + 'static,
    {
        let name = self.name.clone();
        Ok(self.db.run(move |conn| f(conn, &name)).await?)
    }

    /// Receives up to `max` visible messages in one transaction (so no two receivers get the
    /// same one), moving to the dead-letter queue those already received maxReceiveCount times.
    async fn try_receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max_receive_count = i64::from(self.max_receive_count);
        let (received, dead) = self
            .with(move |conn, name| {
                // Nothing visible: done, without taking the write lock (idle receivers poll).
                let any_visible: bool = conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2)",
                    )?
                    .query_row(params![name, now_ms()], |row| row.get(0))?;
                if !any_visible {
                    return Ok((Vec::new(), Vec::new()));
                }
                let tx = Tx::write(conn)?;
                let now = now_ms();
                let visible_at = now.saturating_add(millis(visibility));
                let mut received = Vec::new();
                let mut dead = Vec::new();
                let mut after = 0i64;
                while received.len() < max {
                    let batch = {
                        let mut select = tx.prepare_cached(
                            "SELECT seq, id, body, receive_count FROM queue_messages
                             WHERE queue = ?1 AND seq > ?2 AND visible_at <= ?3
                             ORDER BY seq LIMIT ?4",
                        )?;
                        let rows = select.query_map(
                            params![name, after, now, sql_limit(max - received.len())],
                            |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, String>(1)?,
                                    row.get::<_, StoredText>(2)?.0,
                                    row.get::<_, i64>(3)?,
                                ))
                            },
                        )?;
                        rows.collect::<Result<Vec<_>, _>>()?
                    };
                    if batch.is_empty() {
                        break;
                    }
                    for (seq, id, body, receive_count) in batch {
                        after = seq;
                        if receive_count >= max_receive_count {
                            // Moved as stored, its body not packed a second time.
                            tx.prepare_cached(
                                "INSERT INTO queue_dead_letters (queue, id, body, receive_count)
                                 SELECT queue, id, body, receive_count FROM queue_messages
                                 WHERE seq = ?1",
                            )?
                            .execute([seq])?;
                            tx.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")?
                                .execute([seq])?;
                            dead.push(DeadLettered {
                                id,
                                receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
                            });
                            continue;
                        }
                        let receipt = format!("{name}-{}", uuid::Uuid::new_v4());
                        let receive_count = receive_count + 1;
                        tx.prepare_cached(
                            "UPDATE queue_messages
                             SET receive_count = ?2, visible_at = ?3, receipt = ?4
                             WHERE seq = ?1",
                        )?
                        .execute(params![
                            seq,
                            receive_count,
                            visible_at,
                            receipt
                        ])?;
                        received.push(ReceivedMessage {
                            message_id: id,
                            receipt,
                            body,
                            receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
                        });
                    }
                }
                tx.commit()?;
                Ok((received, dead))
            })
            .await?;
        for message in dead {
            tracing::warn!(
                event = "message_dead_lettered",
                queue = %self.name,
                message_id = %message.id,
                receive_count = message.receive_count,
            );
        }
        Ok(received)
    }
}

/// Reads `(id, body, receive_count)` rows as messages without a receipt (dead letters).
fn dead_letters(rows: rusqlite::Rows<'_>) -> Result<Vec<(i64, ReceivedMessage)>, DbError> {
    let mut rows = rows;
    let mut messages = Vec::new();
    while let Some(row) = rows.next()? {
        messages.push((
            row.get::<_, i64>(0)?,
            ReceivedMessage {
                message_id: row.get(1)?,
                receipt: String::new(),
                body: row.get::<_, StoredText>(2)?.0,
                receive_count: row.get(3)?,
            },
        ));
    }
    Ok(messages)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError> {
        let (accepted, failures) = check_batch(messages)?;
        let accepted: Vec<_> = accepted
            .into_iter()
            .map(|m| {
                let id = uuid::Uuid::new_v4().to_string();
                (id, pack(&m.body), m.delay.unwrap_or_default())
            })
            .collect();
        if !accepted.is_empty() {
            self.with(move |conn, name| {
                let tx = Tx::write(conn)?;
                let now = now_ms();
                for (id, body, delay) in accepted {
                    tx.prepare_cached(
                        "INSERT INTO queue_messages (queue, id, body, visible_at, receive_count)
                         VALUES (?1, ?2, ?3, ?4, 0)",
                    )?
                    .execute(params![
                        name,
                        id,
                        body,
                        now.saturating_add(millis(delay))
                    ])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        }
        Ok(failures)
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let visibility = visibility.unwrap_or(self.default_visibility);
        loop {
            let received = self
                .try_receive(max.clamp(1, MAX_BATCH_ENTRIES), visibility)
                .await?;
            let now = tokio::time::Instant::now();
            if !received.is_empty() || now >= deadline {
                return Ok(received);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.with(move |conn, name| {
            // A stale receipt (the message was received again since) deletes nothing, as in SQS.
            conn.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1 AND queue = ?2")?
                .execute(params![receipt, name])?;
            Ok(())
        })
        .await
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        let receipts = receipts.to_vec();
        self.with(move |conn, name| {
            // One transaction, one commit, for the whole batch.
            let tx = Tx::write(conn)?;
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM queue_messages WHERE receipt = ?1 AND queue = ?2",
                )?;
                for receipt in &receipts {
                    delete.execute(params![receipt, name])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.with(move |conn, name| {
            let changed = conn
                .prepare_cached(
                    "UPDATE queue_messages SET visible_at = ?3 WHERE receipt = ?1 AND queue = ?2",
                )?
                .execute(params![
                    receipt,
                    name,
                    now_ms().saturating_add(millis(timeout))
                ])?;
            if changed == 0 {
                return Err(DbError::Queue(QueueError::Invalid(
                    "receipt handle is not valid".to_owned(),
                )));
            }
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.with(|conn, name| {
            let tx = Tx::read(conn)?;
            let (visible, total): (i64, i64) = tx
                .prepare_cached(
                    "SELECT coalesce(sum(visible_at <= ?2), 0), count(*) FROM queue_messages
                     WHERE queue = ?1",
                )?
                .query_row(params![name, now_ms()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let dead: i64 = tx
                .prepare_cached("SELECT count(*) FROM queue_dead_letters WHERE queue = ?1")?
                .query_row([name], |row| row.get(0))?;
            tx.commit()?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok(QueueDepth {
                visible: count(visible),
                in_flight: count(total - visible),
                dead_letters: count(dead),
            })
        })
        .await
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.with(move |conn, name| {
            let mut select = conn.prepare_cached(
                "SELECT seq, id, body, receive_count FROM queue_dead_letters
                 WHERE queue = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let messages = dead_letters(select.query(params![name, sql_limit(max)])?)?;
            Ok(messages.into_iter().map(|(_, m)| m).collect())
        })
        .await
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.with(move |conn, name| {
            let tx = Tx::write(conn)?;
            let messages = {
                let mut select = tx.prepare_cached(
                    "SELECT seq, id, body, receive_count FROM queue_dead_letters
                     WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                )?;
                dead_letters(select.query(params![name, sql_limit(max)])?)?
            };
            for (seq, _) in &messages {
                tx.prepare_cached("DELETE FROM queue_dead_letters WHERE seq = ?1")?
                    .execute([seq])?;
            }
            tx.commit()?;
            Ok(messages.into_iter().map(|(_, m)| m).collect())
        })
        .await
    }

    async fn redrive_dead_letters(&self) -> Result<usize, QueueError> {
        self.with(|conn, name| {
            let tx = Tx::write(conn)?;
            // Back to the end of the queue in dead-letter order, visible now, never received.
            let moved = tx
                .prepare_cached(
                    "INSERT INTO queue_messages (queue, id, body, visible_at, receive_count)
                     SELECT queue, id, body, ?2, 0 FROM queue_dead_letters
                     WHERE queue = ?1 ORDER BY seq",
                )?
                .execute(params![name, now_ms()])?;
            tx.prepare_cached("DELETE FROM queue_dead_letters WHERE queue = ?1")?
                .execute([name])?;
            tx.commit()?;
            Ok(moved)
        })
        .await
    }
}
