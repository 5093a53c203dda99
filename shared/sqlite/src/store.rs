//! The store ports on SQLite, with the semantics of the in-memory and DynamoDB stores: the same
//! sort keys, cursors and filters (shared with them), conditional writes in transactions.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Params, Rows, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use hunter_core::adapters::keys::{
    audit_sort_key, decode_cursor, encode_cursor, lead_order_key, referral_sort_key, run_sort_key,
};
use hunter_core::adapters::memory_store::{lead_matches, referral_matches};
use hunter_core::ports::{
    FailureStore, LeadQuery, LeadSort, LeadStore, MessageFailure, Page, ReferralQuery,
    ReferralStore, RunCount, StoreError, SyncStore, UpsertOutcome, page_size, upsert_each,
};
use hunter_domain::model::{
    AuditEntry, Lead, LeadReferral, ReferralRecord, StoredVersion, SyncRun, SyncState,
};
use hunter_domain::rules::{Domain, SkipReason, Version};
use hunter_domain::stats::{LeadStats, LeadTally};

use crate::db::{DbError, SqliteDb, Tx};
use crate::packed::{StoredText, pack};

/// Every store port ([`hunter_core::ports::Store`]) on a [`SqliteDb`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: SqliteDb,
}

impl SqliteStore {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    /// The database it writes to.
    pub fn db(&self) -> &SqliteDb {
        &self.db
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        Ok(self.db.run(f).await?)
    }

    /// The record in `data` of the row `sql` selects with `params`, parsed once the shared
    /// connection is released: other calls wait for it only while SQLite reads the row.
    async fn get_record<T, P>(&self, sql: &'static str, params: P) -> Result<Option<T>, StoreError>
    where
        T: DeserializeOwned,
        P: Params + Send + 'static,
    {
        let data = self
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(sql)?
                    .query_row(params, |row| row.get::<_, StoredText>(0))
                    .optional()?)
            })
            .await?;
        Ok(data.map(|data| from_json(&data.0)).transpose()?)
    }
}

/// A record as its `data` column holds it: JSON, packed.
fn to_record<T: Serialize>(value: &T) -> Result<Vec<u8>, DbError> {
    Ok(pack(&serde_json::to_string(value)?))
}

fn from_json<T: DeserializeOwned>(data: &str) -> Result<T, DbError> {
    Ok(serde_json::from_str(data)?)
}

/// The serialized name of an enum value (a filter column holds it).
fn tag<T: Serialize>(value: &T) -> Result<String, DbError> {
    Ok(match serde_json::to_value(value)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// The value of a [`tag`].
fn untag<T: DeserializeOwned>(tag: String) -> Result<T, DbError> {
    Ok(serde_json::from_value(serde_json::Value::String(tag))?)
}

fn to_i64(n: u64, what: &str) -> Result<i64, DbError> {
    i64::try_from(n)
        .map_err(|_| DbError::Store(StoreError::InvalidItem(format!("{what} {n} is too large"))))
}

fn to_u64(n: i64) -> Result<u64, DbError> {
    u64::try_from(n)
        .map_err(|_| DbError::Store(StoreError::InvalidItem(format!("negative version {n}"))))
}

fn check_version(stored: Option<u64>, expected: Option<u64>, what: &str) -> Result<(), DbError> {
    if stored == expected {
        Ok(())
    } else {
        Err(DbError::Store(StoreError::Conflict(format!(
            "{what}: stored version {stored:?}, expected {expected:?}"
        ))))
    }
}

/// Reads `(sort key, data)` rows in page order and keeps those `keep` returns, until a page of
/// `size` and one more (which says there is a next page, whose cursor is the last key kept).
fn collect_page<T>(
    rows: &mut Rows<'_>,
    size: usize,
    mut keep: impl FnMut(&str) -> Result<Option<T>, DbError>,
) -> Result<Page<T>, DbError> {
    let mut items: Vec<(String, T)> = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let data: StoredText = row.get(1)?;
        if let Some(item) = keep(&data.0)? {
            if items.len() == size {
                more = true;
                break;
            }
            items.push((key, item));
        }
    }
    let next_cursor = if more {
        items.last().map(|(key, _)| encode_cursor(key))
    } else {
        None
    };
    Ok(Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next_cursor,
    })
}

/// A referral's row: its keys and filter columns beside the record.
struct ReferralRow {
    id: String,
    sort_key: String,
    status: Option<String>,
    substatus: Option<String>,
    eligible: bool,
    skip_reason: Option<String>,
    search: String,
    data: Vec<u8>,
}

impl ReferralRow {
    fn of(r: &ReferralRecord) -> Result<Self, DbError> {
        Ok(Self {
            id: r.id.clone(),
            sort_key: referral_sort_key(r),
            status: r.status.clone(),
            substatus: r.substatus.clone(),
            eligible: r.eligible,
            skip_reason: r.skip_reason.as_ref().map(tag).transpose()?,
            search: r.search_text(),
            data: to_record(r)?,
        })
    }
}

/// A [`RunCount`] the database call owns.
struct OwnedRunCount {
    run_id: String,
    referral_id: String,
    outcome: UpsertOutcome,
    skip_reason: Option<SkipReason>,
}

impl OwnedRunCount {
    fn of(count: &RunCount<'_>) -> Self {
        Self {
            run_id: count.run_id.to_owned(),
            referral_id: count.referral_id.to_owned(),
            outcome: count.outcome,
            skip_reason: count.skip_reason,
        }
    }
}

/// A lead's row: its version, the sort key of every order, filter columns, the record.
struct LeadRow {
    domain: String,
    version: i64,
    key_score: String,
    key_domain: String,
    key_referrals: String,
    key_updated: String,
    score: Option<u8>,
    provider: Option<String>,
    segment: Option<String>,
    priority_category: Option<String>,
    sync_status: String,
    scan_state: String,
    search: String,
    data: Vec<u8>,
}

impl LeadRow {
    fn of(l: &Lead) -> Result<Self, DbError> {
        Ok(Self {
            domain: l.domain.as_str().to_owned(),
            version: to_i64(l.version, "lead version")?,
            key_score: lead_order_key(l, LeadSort::Score),
            key_domain: lead_order_key(l, LeadSort::Domain),
            key_referrals: lead_order_key(l, LeadSort::Referrals),
            key_updated: lead_order_key(l, LeadSort::Updated),
            score: l.score,
            provider: l.provider.clone(),
            segment: l.segment.as_ref().map(tag).transpose()?,
            priority_category: l.priority_category.as_ref().map(tag).transpose()?,
            sync_status: tag(&l.sync_status)?,
            scan_state: tag(&l.scan_state)?,
            search: l.search_text(),
            data: to_record(l)?,
        })
    }
}

/// The column a lead list in `sort` order is paged by.
fn lead_order_column(sort: LeadSort) -> &'static str {
    match sort {
        LeadSort::Score | LeadSort::ScoreAscending => "key_score",
        LeadSort::Domain => "key_domain",
        LeadSort::Referrals => "key_referrals",
        LeadSort::Updated => "key_updated",
    }
}

const SELECT_RUN: &str = "SELECT data FROM sync_runs WHERE id = ?1";

/// Writes `row` unless the stored record's version is newer or the same.
fn upsert_row(
    conn: &Connection,
    row: &ReferralRow,
    version: &Version,
) -> Result<UpsertOutcome, DbError> {
    let stored = conn
        .prepare_cached("SELECT data FROM referrals WHERE id = ?1")?
        .query_row([&row.id], |r| r.get::<_, StoredText>(0))
        .optional()?
        .map(|data| from_json::<StoredVersion>(&data.0))
        .transpose()?
        .map(Version::from);
    let outcome = UpsertOutcome::of(version, stored.as_ref());
    if outcome.writes() {
        conn.prepare_cached(
            "INSERT INTO referrals
             (id, sort_key, status, substatus, eligible, skip_reason, search, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET
              sort_key = excluded.sort_key, status = excluded.status,
              substatus = excluded.substatus, eligible = excluded.eligible,
              skip_reason = excluded.skip_reason, search = excluded.search,
              data = excluded.data",
        )?
        .execute(params![
            row.id,
            row.sort_key,
            row.status,
            row.substatus,
            row.eligible,
            row.skip_reason,
            row.search,
            row.data
        ])?;
    }
    Ok(outcome)
}

fn get_run(conn: &Connection, id: &str) -> Result<Option<SyncRun>, DbError> {
    conn.prepare_cached(SELECT_RUN)?
        .query_row([id], |row| row.get::<_, StoredText>(0))
        .optional()?
        .map(|data| from_json(&data.0))
        .transpose()
}

fn put_run(conn: &Connection, run: &SyncRun) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO sync_runs (id, sort_key, data) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET sort_key = excluded.sort_key, data = excluded.data",
    )?
    .execute(params![run.id, run_sort_key(run), to_record(run)?])?;
    Ok(())
}

#[async_trait]
impl ReferralStore for SqliteStore {
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError> {
        let version = record.version();
        let row = ReferralRow::of(record)?;
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            let outcome = upsert_row(&tx, &row, &version)?;
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// One transaction for the batch; should it fail, each record in a transaction of its own,
    /// so that a record that cannot be stored fails alone.
    async fn upsert_referrals(
        &self,
        records: &[&ReferralRecord],
    ) -> Vec<Result<UpsertOutcome, StoreError>> {
        let rows = records
            .iter()
            .map(|record| Ok((ReferralRow::of(record)?, record.version())))
            .collect::<Result<Vec<_>, DbError>>();
        if let Ok(rows) = rows {
            let together = self.with(move |conn| {
                let tx = Tx::write(conn)?;
                let outcomes = rows
                    .iter()
                    .map(|(row, version)| upsert_row(&tx, row, version))
                    .collect::<Result<Vec<_>, _>>()?;
                tx.commit()?;
                Ok(outcomes)
            });
            if let Ok(outcomes) = together.await {
                return outcomes.into_iter().map(Ok).collect();
            }
        }
        upsert_each(self, records).await
    }

    async fn get_referral(&self, id: &str) -> Result<Option<ReferralRecord>, StoreError> {
        self.get_record("SELECT data FROM referrals WHERE id = ?1", (id.to_owned(),))
            .await
    }

    async fn list_referrals(
        &self,
        query: &ReferralQuery,
    ) -> Result<Page<ReferralRecord>, StoreError> {
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let size = page_size(query.limit);
        let query = query.clone();
        self.with(move |conn| {
            let skip_reason = query.skip_reason.as_ref().map(tag).transpose()?;
            let text = query
                .q
                .as_ref()
                .map(|q| q.to_lowercase())
                .filter(|q| !q.is_empty());
            // The SQL filters narrow the scan; `referral_matches` decides, as in the other stores.
            let sql = format!(
                "SELECT sort_key, data FROM referrals
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR substatus = ?2)
                   AND (?3 IS NULL OR eligible = ?3) AND (?4 IS NULL OR skip_reason = ?4)
                   AND (?5 IS NULL OR instr(search, ?5) > 0) {}
                 ORDER BY sort_key DESC",
                if after.is_some() {
                    "AND sort_key < ?6"
                } else {
                    "AND ?6 IS NULL"
                }
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(params![
                query.status,
                query.substatus,
                query.eligible,
                skip_reason,
                text,
                after
            ])?;
            collect_page(&mut rows, size, |data| {
                let record: ReferralRecord = from_json(data)?;
                Ok(referral_matches(&query, &record).then_some(record))
            })
        })
        .await
    }
}

#[async_trait]
impl LeadStore for SqliteStore {
    async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError> {
        self.get_record(
            "SELECT data FROM leads WHERE domain = ?1",
            (domain.as_str().to_owned(),),
        )
        .await
    }

    async fn put_lead(
        &self,
        lead: &Lead,
        expected_version: Option<u64>,
        contribution: Option<&LeadReferral>,
    ) -> Result<(), StoreError> {
        let row = LeadRow::of(lead)?;
        let contribution = contribution
            .map(|c| Ok::<_, DbError>((c.id.clone(), to_record(c)?)))
            .transpose()?;
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            let stored = tx
                .prepare_cached("SELECT version FROM leads WHERE domain = ?1")?
                .query_row([&row.domain], |r| r.get::<_, i64>(0))
                .optional()?
                .map(to_u64)
                .transpose()?;
            check_version(stored, expected_version, &row.domain)?;
            tx.prepare_cached(
                "INSERT INTO leads
                 (domain, version, key_score, key_domain, key_referrals, key_updated, score,
                  provider, segment, priority_category, sync_status, scan_state, search, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (domain) DO UPDATE SET
                  version = excluded.version, key_score = excluded.key_score,
                  key_domain = excluded.key_domain, key_referrals = excluded.key_referrals,
                  key_updated = excluded.key_updated, score = excluded.score,
                  provider = excluded.provider, segment = excluded.segment,
                  priority_category = excluded.priority_category,
                  sync_status = excluded.sync_status, scan_state = excluded.scan_state,
                  search = excluded.search, data = excluded.data",
            )?
            .execute(params![
                row.domain,
                row.version,
                row.key_score,
                row.key_domain,
                row.key_referrals,
                row.key_updated,
                row.score,
                row.provider,
                row.segment,
                row.priority_category,
                row.sync_status,
                row.scan_state,
                row.search,
                row.data
            ])?;
            if let Some((referral_id, data)) = contribution {
                tx.prepare_cached(
                    "INSERT INTO contributions (domain, referral_id, data) VALUES (?1, ?2, ?3)
                     ON CONFLICT (domain, referral_id) DO UPDATE SET data = excluded.data",
                )?
                .execute(params![row.domain, referral_id, data])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_contribution(
        &self,
        domain: &Domain,
        referral_id: &str,
    ) -> Result<Option<LeadReferral>, StoreError> {
        self.get_record(
            "SELECT data FROM contributions WHERE domain = ?1 AND referral_id = ?2",
            (domain.as_str().to_owned(), referral_id.to_owned()),
        )
        .await
    }

    async fn list_contributions(
        &self,
        domain: &Domain,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LeadReferral>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let size = page_size(limit);
        let domain = domain.as_str().to_owned();
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT referral_id, data FROM contributions
                 WHERE domain = ?1 AND (?2 IS NULL OR referral_id > ?2)
                 ORDER BY referral_id",
            )?;
            let mut rows = statement.query(params![domain, after])?;
            collect_page(&mut rows, size, |data| Ok(Some(from_json(data)?)))
        })
        .await
    }

    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let size = page_size(query.limit);
        let query = query.clone();
        self.with(move |conn| {
            let column = lead_order_column(query.sort);
            let (direction, before) = if query.sort.descending() {
                ("DESC", "<")
            } else {
                ("ASC", ">")
            };
            let categories = if query.priority_categories.is_empty() {
                None
            } else {
                let tags = query
                    .priority_categories
                    .iter()
                    .map(tag)
                    .collect::<Result<Vec<_>, _>>()?;
                Some(serde_json::to_string(&tags)?)
            };
            let text = query
                .q
                .as_ref()
                .map(|q| q.to_lowercase())
                .filter(|q| !q.is_empty());
            let cursor = if after.is_some() {
                format!("AND {column} {before} ?8")
            } else {
                "AND ?8 IS NULL".to_owned()
            };
            // The SQL filters narrow the scan; `lead_matches` decides, as in the other stores.
            let sql = format!(
                "SELECT {column}, data FROM leads
                 WHERE (?1 IS NULL OR segment = ?1)
                   AND (?2 IS NULL OR priority_category IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR provider = ?3)
                   AND (?4 IS NULL OR coalesce(score, 0) >= ?4)
                   AND (?5 IS NULL OR sync_status = ?5) AND (?6 IS NULL OR scan_state = ?6)
                   AND (?7 IS NULL OR instr(search, ?7) > 0) {cursor}
                 ORDER BY {column} {direction}"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(params![
                query.segment.as_ref().map(tag).transpose()?,
                categories,
                query.provider,
                query.min_score,
                query.sync_status.as_ref().map(tag).transpose()?,
                query.scan_state.as_ref().map(tag).transpose()?,
                text,
                after
            ])?;
            collect_page(&mut rows, size, |data| {
                let lead: Lead = from_json(data)?;
                Ok(lead_matches(&query, &lead).then_some(lead))
            })
        })
        .await
    }

    async fn lead_stats(&self) -> Result<LeadStats, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT score, provider, segment, priority_category, sync_status, scan_state
                 FROM leads",
            )?;
            let mut rows = statement.query([])?;
            let mut stats = LeadStats::default();
            while let Some(row) = rows.next()? {
                let tally = LeadTally {
                    score: row.get(0)?,
                    provider: row.get(1)?,
                    segment: row.get::<_, Option<String>>(2)?.map(untag).transpose()?,
                    priority_category: row.get::<_, Option<String>>(3)?.map(untag).transpose()?,
                    sync_status: untag(row.get(4)?)?,
                    scan_state: untag(row.get(5)?)?,
                };
                stats.add(&tally);
            }
            Ok(stats)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let domain = entry.domain.as_str().to_owned();
        let id = entry.id.clone();
        let sort_key = audit_sort_key(entry);
        let data = to_record(entry)?;
        self.with(move |conn| {
            let added = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO audit (domain, id, sort_key, data)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![domain, id, sort_key, data])?;
            if added == 0 {
                return Err(DbError::Store(StoreError::Conflict(format!(
                    "audit entry {id} exists"
                ))));
            }
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        domain: &Domain,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let domain = domain.as_str().to_owned();
        // As the embedded store: a page of at most `MAX_PAGE_SIZE`.
        let limit = i64::try_from(page_size(Some(limit))).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT data FROM audit WHERE domain = ?1 ORDER BY sort_key DESC LIMIT ?2",
            )?;
            let mut rows = statement.query(params![domain, limit])?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next()? {
                entries.push(from_json(&row.get::<_, StoredText>(0)?.0)?);
            }
            Ok(entries)
        })
        .await
    }
}

#[async_trait]
impl SyncStore for SqliteStore {
    async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let mut run = run.clone();
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            if let Some(stored) = get_run(&tx, &run.id)? {
                run.stored = stored.stored;
                run.eligible = stored.eligible;
                run.skipped = stored.skipped;
                run.outcomes = stored.outcomes;
                run.summarized_at = stored.summarized_at;
            }
            put_run(&tx, &run)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn count_ingested(&self, count: RunCount<'_>) -> Result<bool, StoreError> {
        let counted = self.count_all_ingested(&[count]).await?;
        Ok(counted.first().copied().unwrap_or(false))
    }

    /// One transaction for the batch: each run read once and written once.
    async fn count_all_ingested(&self, counts: &[RunCount<'_>]) -> Result<Vec<bool>, StoreError> {
        let counts: Vec<OwnedRunCount> = counts.iter().map(OwnedRunCount::of).collect();
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            // Each run named, as read (`None`: no such run) and whether a count changed it.
            let mut runs: Vec<(Option<SyncRun>, bool)> = Vec::new();
            let mut run_of: HashMap<&str, usize> = HashMap::new();
            let mut counted = Vec::with_capacity(counts.len());
            for count in &counts {
                let slot = match run_of.get(count.run_id.as_str()) {
                    Some(&slot) => slot,
                    None => {
                        runs.push((get_run(&tx, &count.run_id)?, false));
                        run_of.insert(&count.run_id, runs.len() - 1);
                        runs.len() - 1
                    }
                };
                let (Some(run), changed) = &mut runs[slot] else {
                    counted.push(false);
                    continue;
                };
                let new = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO run_counted (run_id, referral_id) VALUES (?1, ?2)",
                    )?
                    .execute([&count.run_id, &count.referral_id])?
                    > 0;
                if new {
                    run.add_ingested(count.outcome, count.skip_reason);
                    *changed = true;
                }
                counted.push(new);
            }
            for (run, _) in runs.iter().filter(|(_, changed)| *changed) {
                run.as_ref().map(|run| put_run(&tx, run)).transpose()?;
            }
            tx.commit()?;
            Ok(counted)
        })
        .await
    }

    async fn claim_run_summary(&self, run_id: &str) -> Result<bool, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            match get_run(&tx, &run_id)? {
                Some(mut run) if run.summarized_at.is_none() => {
                    run.summarized_at = Some(hunter_domain::clock::now());
                    put_run(&tx, &run)?;
                    tx.commit()?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn get_sync_run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.get_record(SELECT_RUN, (id.to_owned(),)).await
    }

    async fn list_sync_runs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let size = page_size(limit);
        self.with(move |conn| {
            let sql = if after.is_some() {
                "SELECT sort_key, data FROM sync_runs WHERE sort_key < ?1 ORDER BY sort_key DESC"
            } else {
                "SELECT sort_key, data FROM sync_runs WHERE ?1 IS NULL ORDER BY sort_key DESC"
            };
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query([after])?;
            collect_page(&mut rows, size, |data| Ok(Some(from_json(data)?)))
        })
        .await
    }

    async fn get_state(&self, key: &str) -> Result<Option<SyncState>, StoreError> {
        self.get_record(
            "SELECT data FROM sync_state WHERE key = ?1",
            (key.to_owned(),),
        )
        .await
    }

    async fn put_state(
        &self,
        state: &SyncState,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = state.key.clone();
        let version = to_i64(state.version, "state version")?;
        let data = to_record(state)?;
        self.with(move |conn| {
            let tx = Tx::write(conn)?;
            let stored = tx
                .prepare_cached("SELECT version FROM sync_state WHERE key = ?1")?
                .query_row([&key], |r| r.get::<_, i64>(0))
                .optional()?
                .map(to_u64)
                .transpose()?;
            check_version(stored, expected_version, &key)?;
            tx.prepare_cached(
                "INSERT INTO sync_state (key, version, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET version = excluded.version, data = excluded.data",
            )?
            .execute(params![key, version, data])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl FailureStore for SqliteStore {
    async fn record_failure(&self, failure: &MessageFailure) -> Result<(), StoreError> {
        let queue = failure.queue.clone();
        let message_id = failure.message_id.clone();
        let data = to_record(failure)?;
        self.with(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO message_failures (queue, message_id, data)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![queue, message_id, data])?;
            Ok(())
        })
        .await
    }

    async fn get_failure(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<Option<MessageFailure>, StoreError> {
        self.get_record(
            "SELECT data FROM message_failures WHERE queue = ?1 AND message_id = ?2",
            (queue.to_owned(), message_id.to_owned()),
        )
        .await
    }
}
