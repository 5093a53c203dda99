//! The operator's commands on the durable backend, as people run them: `hunter-local dlq` lists a
//! dead letter with its last error, `redrive` moves it back, `backup` copies the database.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use hunter_core::messages::PushMessage;
use hunter_core::ports::{FailureStore, MessageFailure, OutgoingMessage, Queue};
use hunter_sqlite::{SqliteDb, SqliteQueue, SqliteStore};

fn hunter_local(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hunter-local"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn dlq_names_a_dead_letter_and_its_error_redrive_moves_it_back_backup_copies_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let message_id = {
        let db = SqliteDb::open(&data.join("hunter.db")).unwrap();
        let store = SqliteStore::new(db.clone());
        // maxReceiveCount 1: a failed message goes to the DLQ on its next receive.
        let queue = SqliteQueue::new(db, "hunter-dynamics-push", Duration::ZERO, 1);
        let body = PushMessage {
            domain: "contoso.com".into(),
            lead_version: 3,
            force: false,
            deferrals: 0,
        }
        .to_body();
        queue
            .send_batch(&[OutgoingMessage::new("0", body)])
            .await
            .unwrap();
        let received = queue.receive(1, None, Duration::ZERO).await.unwrap();
        store
            .record_failure(&MessageFailure {
                queue: "dynamics-push".into(),
                message_id: received[0].message_id.clone(),
                receive_count: 1,
                error: "Dataverse answered 503 after 5 retries".into(),
                at: hunter_domain::clock::now(),
            })
            .await
            .unwrap();
        assert!(
            queue
                .receive(1, None, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(queue.depth().await.unwrap().dead_letters, 1);
        received[0].message_id.clone()
    };

    let (ok, listed) = hunter_local(&["dlq", "--data-dir", &data_arg]);
    assert!(ok, "{listed}");
    assert!(listed.contains(&message_id), "{listed}");
    assert!(listed.contains("lead contoso.com (version 3)"), "{listed}");
    assert!(
        listed.contains("Dataverse answered 503 after 5 retries"),
        "{listed}"
    );
    let (ok, referrals_only) =
        hunter_local(&["dlq", "--queue", "referrals", "--data-dir", &data_arg]);
    assert!(ok);
    assert!(
        referrals_only.contains("no dead letters"),
        "{referrals_only}"
    );

    let backup = dir.path().join("copy.db");
    let (ok, said) = hunter_local(&["backup", backup.to_str().unwrap(), "--data-dir", &data_arg]);
    assert!(ok, "{said}");

    let (ok, moved) = hunter_local(&[
        "redrive",
        "--queue",
        "dynamics-push",
        "--data-dir",
        &data_arg,
    ]);
    assert!(ok, "{moved}");
    assert!(moved.contains("moved 1 dead letters back"), "{moved}");
    let (_, after) = hunter_local(&["dlq", "--data-dir", &data_arg]);
    assert!(after.contains("no dead letters"), "{after}");
    let queue = SqliteQueue::new(
        SqliteDb::open(&data.join("hunter.db")).unwrap(),
        "hunter-dynamics-push",
        Duration::from_secs(30),
        5,
    );
    assert_eq!(queue.depth().await.unwrap().visible, 1, "back on its queue");

    let copy = SqliteQueue::new(
        SqliteDb::open(&backup).unwrap(),
        "hunter-dynamics-push",
        Duration::from_secs(30),
        5,
    );
    assert_eq!(
        copy.depth().await.unwrap().dead_letters,
        1,
        "the backup holds the database as it was"
    );
}

#[test]
fn backup_of_a_throwaway_run_says_why_it_cannot() {
    let (ok, _) = hunter_local(&["backup", "/tmp/never.db", "--in-memory"]);
    assert!(!ok, "there is no database to copy");
}
