//! What the SQLite backend promises beyond the port contract (which `tests/contract` checks):
//! data survives reopening the file, a failed write leaves nothing, concurrent receivers never
//! share a message, and a backup opens with the same data.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use hunter_core::ports::{
    LeadQuery, LeadStore, OutgoingMessage, Queue, ReferralQuery, ReferralStore, StoreError,
    SyncStore, UpsertOutcome,
};
use hunter_domain::model::{Lead, LeadReferral, ReferralRecord, SyncState};
use hunter_domain::rules::{Domain, normalize_domain};
use hunter_sqlite::{SqliteDb, SqliteQueue, SqliteStore};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 8, 0, 0).single().unwrap() + chrono::Duration::minutes(minute)
}

fn domain(text: &str) -> Domain {
    normalize_domain(text).unwrap()
}

fn referral(id: &str, minute: i64) -> ReferralRecord {
    let mut record = ReferralRecord::invalid("{}", "test", at(minute));
    record.id = id.to_owned();
    record.name = Some(format!("Referral {id}"));
    record.created_date_time = Some(at(minute));
    record.updated_date_time = Some(at(minute));
    record.etag = Some(format!("\"{id}\""));
    record
}

fn contribution(id: &str) -> LeadReferral {
    LeadReferral {
        id: id.to_owned(),
        referral_type: Some("Shared".to_owned()),
        status: Some("Active".to_owned()),
        deal_value: Some(1.0),
        currency: Some("EUR".to_owned()),
        customer_name: Some("Contoso".to_owned()),
        updated_date_time: Some(at(1)),
        opportunity_id: None,
    }
}

fn state(version: u64) -> SyncState {
    SyncState {
        key: "partner_center_watermark".to_owned(),
        value: serde_json::json!({ "updatedDateTime": "2026-10-29T08:01:12Z" }),
        version,
        updated_at: at(0),
    }
}

fn messages(from: usize, n: usize) -> Vec<OutgoingMessage> {
    (from..from + n)
        .map(|i| OutgoingMessage::new(format!("m{i}"), format!("{{\"n\":{i}}}")))
        .collect()
}

fn open(path: &Path) -> (SqliteStore, SqliteQueue) {
    let db = SqliteDb::open(path).unwrap();
    let queue = SqliteQueue::new(db.clone(), "referrals", Duration::from_secs(30), 5);
    (SqliteStore::new(db), queue)
}

async fn fill(store: &SqliteStore) -> Lead {
    for (n, id) in ["r1", "r2", "r3"].into_iter().enumerate() {
        store
            .upsert_referral(&referral(id, i64::try_from(n).unwrap()))
            .await
            .unwrap();
    }
    let mut lead = Lead::new(domain("contoso.com"), at(0));
    lead.score = Some(72);
    lead.company_name = Some("Contoso".to_owned());
    store
        .put_lead(&lead, None, Some(&contribution("r1")))
        .await
        .unwrap();
    store.put_state(&state(1), None).await.unwrap();
    lead
}

async fn assert_filled(store: &SqliteStore, lead: &Lead) {
    let referrals = store
        .list_referrals(&ReferralQuery::default())
        .await
        .unwrap();
    assert_eq!(
        referrals
            .items
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["r3", "r2", "r1"]
    );
    assert_eq!(
        store.get_referral("r2").await.unwrap(),
        Some(referral("r2", 1))
    );
    assert_eq!(
        store.get_lead(&lead.domain).await.unwrap().as_ref(),
        Some(lead)
    );
    assert_eq!(
        store.get_contribution(&lead.domain, "r1").await.unwrap(),
        Some(contribution("r1"))
    );
    assert_eq!(
        store.list_leads(&LeadQuery::default()).await.unwrap().items,
        std::slice::from_ref(lead)
    );
    assert_eq!(
        store.get_state("partner_center_watermark").await.unwrap(),
        Some(state(1))
    );
}

/// The visibility timeout of the message in flight across the reopen: long enough for a busy
/// machine to reopen the file and look before it ends.
const VISIBILITY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_committed_survives_reopening_the_file_and_in_flight_messages_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (store, queue) = open(&path);
    let lead = fill(&store).await;
    assert!(queue.send_batch(&messages(0, 3)).await.unwrap().is_empty());
    // Taken before the receive: the message's visibility ends at least VISIBILITY after it.
    let received_at = Instant::now();
    let in_flight = queue
        .receive(1, Some(VISIBILITY), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(in_flight.len(), 1);
    // As after a crash: nothing is closed or flushed on purpose, the handles are just gone.
    drop((store, queue));

    let (store, queue) = open(&path);
    assert_filled(&store, &lead).await;
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (2, 1));
    let others = queue.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(
        others.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        [r#"{"n":1}"#, r#"{"n":2}"#],
        "the others are visible at once, in the order they were sent"
    );
    assert!(others.iter().all(|m| m.receive_count == 1));
    assert!(
        received_at.elapsed() < VISIBILITY,
        "the test was too slow to see the message hidden"
    );
    assert!(
        queue
            .receive(10, None, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "the in-flight message stays hidden until its visibility timeout ends"
    );
    let again = queue.receive(10, None, VISIBILITY * 2).await.unwrap();
    // The store keeps visibility in whole milliseconds: allow for the one it may round away.
    assert!(received_at.elapsed() + Duration::from_millis(1) >= VISIBILITY);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, in_flight[0].message_id);
    assert_eq!(again[0].body, in_flight[0].body);
    assert_eq!(again[0].receive_count, 2);
    // The receipt of the first receive is stale now.
    assert!(
        queue
            .change_visibility(&in_flight[0].receipt, Duration::ZERO)
            .await
            .is_err()
    );
    queue.delete(&in_flight[0].receipt).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().in_flight, 3);
    queue.delete(&again[0].receipt).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().in_flight, 2);
}

/// Another connection to `path` with a trigger that refuses every new contribution (drop it with
/// `DROP TRIGGER refuse`).
fn refuse_contributions(path: &Path) -> rusqlite::Connection {
    let saboteur = rusqlite::Connection::open(path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON contributions
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    saboteur
}

#[tokio::test]
async fn a_write_that_fails_midway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (store, _) = open(&path);
    let contoso = domain("contoso.com");
    let mut lead = Lead::new(contoso.clone(), at(0));
    store
        .put_lead(&lead, None, Some(&contribution("r1")))
        .await
        .unwrap();

    // A lost version check: neither the lead nor the contribution.
    lead.version = 2;
    lead.referral_count = 2;
    let lost = store
        .put_lead(&lead, Some(5), Some(&contribution("r2")))
        .await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    assert_eq!(store.get_contribution(&contoso, "r2").await.unwrap(), None);
    assert_eq!(store.get_lead(&contoso).await.unwrap().unwrap().version, 1);

    // The second statement of the transaction fails after the first succeeded: the lead is
    // rolled back with it.
    let saboteur = refuse_contributions(&path);
    let fabrikam = Lead::new(domain("fabrikam.com"), at(0));
    let failed = store
        .put_lead(&fabrikam, None, Some(&contribution("r3")))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.get_lead(&fabrikam.domain).await.unwrap(), None);
    let failed = store
        .put_lead(&lead, Some(1), Some(&contribution("r2")))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.get_lead(&contoso).await.unwrap().unwrap().version, 1);
    saboteur.execute_batch("DROP TRIGGER refuse").unwrap();
    store
        .put_lead(&lead, Some(1), Some(&contribution("r2")))
        .await
        .unwrap();
    assert_eq!(store.get_lead(&contoso).await.unwrap(), Some(lead));
}

/// A batch of referral upserts is one transaction; when a record in it cannot be stored, the
/// others are stored each on its own and only that record fails.
#[tokio::test]
async fn a_referral_that_cannot_be_stored_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (store, _) = open(&path);
    let saboteur = rusqlite::Connection::open(&path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON referrals WHEN NEW.id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let (first, poison, last) = (referral("r1", 1), referral("poison", 2), referral("r3", 3));

    let outcomes = store.upsert_referrals(&[&first, &poison, &last]).await;

    assert!(
        matches!(
            outcomes.as_slice(),
            [
                Ok(UpsertOutcome::Inserted),
                Err(StoreError::Unavailable(_)),
                Ok(UpsertOutcome::Inserted)
            ]
        ),
        "{outcomes:?}"
    );
    assert_eq!(store.get_referral("r1").await.unwrap(), Some(first));
    assert_eq!(store.get_referral("poison").await.unwrap(), None);
    assert_eq!(store.get_referral("r3").await.unwrap(), Some(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_receivers_get_every_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let shared = SqliteDb::open(&path).unwrap();
    let queue = |db: SqliteDb| SqliteQueue::new(db, "referrals", Duration::from_secs(60), 5);
    for batch in 0..20 {
        let sent = queue(shared.clone())
            .send_batch(&messages(batch * 10, 10))
            .await
            .unwrap();
        assert!(sent.is_empty());
    }
    // Two receivers share a connection, two have one each (as another process would).
    let receivers = [
        queue(shared.clone()),
        queue(shared.clone()),
        queue(SqliteDb::open(&path).unwrap()),
        queue(SqliteDb::open(&path).unwrap()),
    ];
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|q| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = q
                        .receive(10, None, Duration::from_millis(100))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch);
                }
            })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut per_task = Vec::new();
    for task in tasks {
        let got = task.await.unwrap();
        per_task.push(got.len());
        assert!(got.iter().all(|m| m.receive_count == 1));
        bodies.extend(got.into_iter().map(|m| m.body));
    }
    assert_eq!(bodies.len(), 200, "per task: {per_task:?}");
    let distinct: HashSet<&String> = bodies.iter().collect();
    assert_eq!(distinct.len(), 200, "a message was received twice");
    let depth = queue(shared).depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 200));
}

#[tokio::test]
async fn a_backup_opens_with_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = open(&dir.path().join("hunter.db"));
    let lead = fill(&store).await;
    queue.send_batch(&messages(0, 2)).await.unwrap();
    let backup = dir.path().join("backup.db");
    let db = store.db().clone();
    let to = backup.clone();
    tokio::task::spawn_blocking(move || db.backup_to(&to))
        .await
        .unwrap()
        .unwrap();
    // Writes after the backup are not in it.
    store.upsert_referral(&referral("r4", 9)).await.unwrap();

    let (restored, restored_queue) = open(&backup);
    assert_filled(&restored, &lead).await;
    assert_eq!(restored.get_referral("r4").await.unwrap(), None);
    let received = restored_queue
        .receive(10, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
}

#[tokio::test]
async fn queues_of_one_file_are_separate() {
    let db = SqliteDb::open_in_memory().unwrap();
    let referrals = SqliteQueue::new(db.clone(), "referrals", Duration::from_secs(30), 2);
    let push = SqliteQueue::new(db, "dynamics-push", Duration::from_secs(30), 2);
    referrals.send_batch(&messages(0, 3)).await.unwrap();
    push.send_batch(&messages(10, 1)).await.unwrap();
    assert_eq!(referrals.depth().await.unwrap().visible, 3);
    let got = push.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, r#"{"n":10}"#);
    // A receipt of one queue does nothing in another.
    assert!(
        referrals
            .change_visibility(&got[0].receipt, Duration::ZERO)
            .await
            .is_err()
    );
    referrals.delete(&got[0].receipt).await.unwrap();
    assert_eq!(push.depth().await.unwrap().in_flight, 1);
}

/// A window no test waits for: only `commit` and drop commit the group.
const NEVER: Duration = Duration::from_secs(3600);

fn open_grouped(path: &Path, window: Duration) -> (SqliteDb, SqliteStore, SqliteQueue) {
    let db = SqliteDb::open_grouped(path, window).unwrap();
    let queue = SqliteQueue::new(db.clone(), "referrals", Duration::from_secs(30), 5);
    (db.clone(), SqliteStore::new(db), queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_are_seen_by_another_connection_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (db, store, _) = open_grouped(&path, NEVER);
    let (other, _) = open(&path);
    store.upsert_referral(&referral("r1", 0)).await.unwrap();
    // The writer reads its own writes; another connection sees the last commit.
    assert!(store.get_referral("r1").await.unwrap().is_some());
    assert_eq!(other.get_referral("r1").await.unwrap(), None);
    db.commit().unwrap();
    assert_eq!(
        other.get_referral("r1").await.unwrap(),
        Some(referral("r1", 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_are_committed_within_the_window_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (other, _) = open(&path);
    {
        let (_db, store, _) = open_grouped(&path, Duration::from_millis(20));
        store.upsert_referral(&referral("r1", 0)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while other.get_referral("r1").await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "the group was never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    {
        let (_db, store, _) = open_grouped(&path, NEVER);
        store.upsert_referral(&referral("r2", 1)).await.unwrap();
    }
    assert!(other.get_referral("r2").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_fails_inside_a_group_undoes_its_own_writes_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (db, store, _) = open_grouped(&path, NEVER);
    let _saboteur = refuse_contributions(&path);
    store.upsert_referral(&referral("r1", 0)).await.unwrap();
    // The lead is written, then its contribution is refused: the lead goes, r1 stays.
    let fabrikam = Lead::new(domain("fabrikam.com"), at(0));
    let failed = store
        .put_lead(&fabrikam, None, Some(&contribution("r1")))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.get_lead(&fabrikam.domain).await.unwrap(), None);
    store.upsert_referral(&referral("r2", 1)).await.unwrap();
    db.commit().unwrap();

    let (other, _) = open(&path);
    assert!(other.get_referral("r1").await.unwrap().is_some());
    assert!(other.get_referral("r2").await.unwrap().is_some());
    assert_eq!(other.get_lead(&fabrikam.domain).await.unwrap(), None);
}

/// A crash (the connection never closed, nothing committed after the last group) loses the
/// calls of the open group together: the referral written and the message deleted after the
/// last commit are both gone, so the message is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_the_open_group_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    let (db, store, queue) = open_grouped(&path, NEVER);
    queue.send_batch(&messages(0, 2)).await.unwrap();
    store.upsert_referral(&referral("r1", 0)).await.unwrap();
    db.commit().unwrap();
    let received = queue.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(received.len(), 2);
    store.upsert_referral(&referral("r2", 1)).await.unwrap();
    queue.delete(&received[0].receipt).await.unwrap();
    // The process dies: no commit, no close. What it leaves on disk is the file and its WAL.
    let crashed = dir.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    for file in ["hunter.db", "hunter.db-wal"] {
        std::fs::copy(dir.path().join(file), crashed.join(file)).unwrap();
    }
    std::mem::forget((db, store, queue));

    let (other, other_queue) = open(&crashed.join("hunter.db"));
    assert!(other.get_referral("r1").await.unwrap().is_some());
    assert_eq!(other.get_referral("r2").await.unwrap(), None);
    let depth = other_queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (2, 0));
}

/// How `path` holds `column` of the row of `table` where `condition` holds: `text` or `blob`.
fn stored_as(path: &Path, table: &str, column: &str, condition: &str) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            &format!("SELECT typeof({column}) FROM {table} WHERE {condition}"),
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// A file the build of schema version 1 wrote (records and message bodies as plain JSON text)
/// opens as version 2 and reads as it was; what is written since is packed, and both read after
/// reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_schema_version_1_reads_as_it_was_beside_what_is_written_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hunter.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/schema-v1.sql"))
        .unwrap();
    let old_referral = "fd3330eb-c23a-490e-bc64-35ccdaaa82d9";
    let old_row = format!("id = '{old_referral}'");
    assert_eq!(stored_as(&path, "referrals", "data", &old_row), "text");

    let db = SqliteDb::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), 2);
    let store = SqliteStore::new(db.clone());
    let push = SqliteQueue::new(db, "hunter-dynamics-push", Duration::from_secs(30), 5);
    let referrals = store
        .list_referrals(&ReferralQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(referrals.len(), 6);
    assert_eq!(referrals.iter().filter(|r| r.eligible).count(), 4);
    let contoso = domain("contoso.com");
    let mut lead = store.get_lead(&contoso).await.unwrap().unwrap();
    assert_eq!((lead.score, lead.version), (Some(85), 3));
    let fabrikam = domain("fabrikam.com");
    let contribution = store.get_contribution(&fabrikam, old_referral).await;
    assert_eq!(contribution.unwrap().unwrap().id, old_referral);
    let runs = store.list_sync_runs(None, None).await.unwrap().items;
    assert_eq!(runs.len(), 1);
    assert!(store.get_state("partner_center_watermark").await.is_ok());
    let bodies = push.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(bodies.len(), 4);
    assert!(
        bodies
            .iter()
            .any(|m| m.body == r#"{"domain":"fabrikam.com","leadVersion":2}"#)
    );

    store.upsert_referral(&referral("r-new", 1)).await.unwrap();
    lead.score = Some(60);
    lead.version = 4;
    store.put_lead(&lead, Some(3), None).await.unwrap();
    assert!(push.send_batch(&messages(0, 1)).await.unwrap().is_empty());
    drop((store, push));
    assert_eq!(
        stored_as(&path, "referrals", "data", "id = 'r-new'"),
        "blob"
    );
    assert_eq!(
        stored_as(&path, "leads", "data", "domain = 'contoso.com'"),
        "blob"
    );
    assert_eq!(
        stored_as(&path, "queue_messages", "body", "receipt IS NULL"),
        "blob"
    );
    assert_eq!(stored_as(&path, "referrals", "data", &old_row), "text");

    let db = SqliteDb::open(&path).unwrap();
    let store = SqliteStore::new(db.clone());
    let push = SqliteQueue::new(db, "hunter-dynamics-push", Duration::from_secs(30), 5);
    assert_eq!(
        store.get_referral("r-new").await.unwrap(),
        Some(referral("r-new", 1))
    );
    assert_eq!(
        store.get_referral(old_referral).await.unwrap(),
        referrals.into_iter().find(|r| r.id == old_referral)
    );
    assert_eq!(store.get_lead(&contoso).await.unwrap(), Some(lead));
    let sent = push.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(
        sent.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        [r#"{"n":0}"#]
    );
}
