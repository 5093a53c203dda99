//! Helpers shared by the workspace-level contract and end-to-end tests.
//!
//! Tests against moto server read its address from `HUNTER_MOTO_URL`, which
//! `scripts/with-moto.sh` (run by `make test` and `make test-moto`) sets.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use hunter_core::adapters::{
    DynamoStore, EmbeddedQueue, EmbeddedStore, Otherwise, SqsQueue, StaticScanner,
};
use hunter_core::ports::{Queue, Store};
use hunter_domain::rules::Domain;
use hunter_domain::scan::{DnsAnswers, MxRecord, ScanState};
use tokio::sync::{Mutex, MutexGuard};

/// How old a scan may be before ingest scans the domain again, in tests.
pub const RESCAN_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// A scanner that answers from the mail set-ups of [`mail_profiles`] instead of DNS; any other
/// domain times out (stays unscored).
pub fn scanner() -> StaticScanner {
    StaticScanner::new(mail_profiles(), Otherwise::State(ScanState::Timeout))
}

/// DNS answers for the company domains the tests use: `company0.de`..`company6.de` (the
/// support referrals), `contoso.com` and `company0.com`..`company1100.example`-style names
/// are added as the tests need them.
pub fn mail_profiles() -> HashMap<Domain, DnsAnswers> {
    let google = |domain: &str| DnsAnswers {
        mx: vec![MxRecord {
            preference: 1,
            host: "aspmx.l.google.com".to_owned(),
        }],
        apex_txt: vec!["v=spf1 include:_spf.google.com ~all".to_owned()],
        dkim_txt: vec![(
            "google".to_owned(),
            vec!["v=DKIM1; k=rsa; p=MIIB".to_owned()],
        )],
        dmarc_txt: vec![format!("v=DMARC1; p=quarantine; rua=mailto:d@{domain}")],
    };
    let mut profiles = HashMap::new();
    for n in 0..7 {
        let domain = format!("company{n}.de");
        profiles.insert(domain_of(&domain), google(&domain));
    }
    profiles.insert(domain_of("contoso.com"), google("contoso.com"));
    profiles
}

fn domain_of(text: &str) -> Domain {
    hunter_domain::rules::normalize_domain(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Moto state is global: tests that use it run one at a time and reset it first.
static MOTO: Mutex<()> = Mutex::const_new(());

/// The moto server's URL; panics with the way to get one.
pub fn moto_url() -> String {
    std::env::var("HUNTER_MOTO_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| panic!("HUNTER_MOTO_URL is not set: run `make test-moto` (scripts/with-moto.sh starts moto)"))
}

/// Exclusive use of moto, reset to empty.
pub async fn moto_session() -> MutexGuard<'static, ()> {
    let guard = MOTO.lock().await;
    let response = reqwest::Client::new()
        .post(format!("{}/moto-api/reset", moto_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto reset failed: {e}"));
    assert!(
        response.status().is_success(),
        "moto reset answered {}",
        response.status()
    );
    guard
}

/// AWS SDK configuration pointing at moto with dummy credentials.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

#[allow(
    missing_debug_implementations,
    reason = "holds trait objects and a lock guard"
)]
/// A store under test and what keeps its backend to itself.
pub struct StoreFixture {
    pub store: Arc<dyn Store>,
    _moto: Option<MutexGuard<'static, ()>>,
    /// The directory of a file-backed store, removed when the fixture is dropped.
    _dir: Option<tempfile::TempDir>,
}

#[allow(
    missing_debug_implementations,
    reason = "holds trait objects and a lock guard"
)]
/// A queue under test and what keeps its backend to itself.
pub struct QueueFixture {
    pub queue: Arc<dyn Queue>,
    _moto: Option<MutexGuard<'static, ()>>,
    /// The directory of a file-backed queue, removed when the fixture is dropped.
    _dir: Option<tempfile::TempDir>,
}

pub async fn embedded_store() -> StoreFixture {
    StoreFixture {
        store: Arc::new(EmbeddedStore::new()),
        _moto: None,
        _dir: None,
    }
}

pub async fn moto_store() -> StoreFixture {
    let guard = moto_session().await;
    let client = aws_sdk_dynamodb::Client::new(&moto_sdk_config().await);
    let store = DynamoStore::new(client, "hunter-contract");
    store
        .ensure_table()
        .await
        .unwrap_or_else(|e| panic!("create table: {e}"));
    StoreFixture {
        store: Arc::new(store),
        _moto: Some(guard),
        _dir: None,
    }
}

pub async fn embedded_queue(visibility: Duration, max_receive_count: u32) -> QueueFixture {
    QueueFixture {
        queue: Arc::new(EmbeddedQueue::new(
            "contract",
            visibility,
            max_receive_count,
        )),
        _moto: None,
        _dir: None,
    }
}

/// A SQLite file of its own in a temporary directory (`DIR/hunter.db`), its commits grouped as
/// hunter-local groups them.
fn sqlite_db() -> (hunter_sqlite::SqliteDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let db = hunter_sqlite::SqliteDb::open_grouped(
        &dir.path().join("hunter.db"),
        Duration::from_millis(10),
    )
    .unwrap_or_else(|e| panic!("open sqlite: {e}"));
    (db, dir)
}

pub async fn sqlite_store() -> StoreFixture {
    let (db, dir) = sqlite_db();
    StoreFixture {
        store: Arc::new(hunter_sqlite::SqliteStore::new(db)),
        _moto: None,
        _dir: Some(dir),
    }
}

pub async fn sqlite_queue(visibility: Duration, max_receive_count: u32) -> QueueFixture {
    let (db, dir) = sqlite_db();
    QueueFixture {
        queue: Arc::new(hunter_sqlite::SqliteQueue::new(
            db,
            "contract",
            visibility,
            max_receive_count,
        )),
        _moto: None,
        _dir: Some(dir),
    }
}

pub async fn moto_queue(visibility: Duration, max_receive_count: u32) -> QueueFixture {
    let guard = moto_session().await;
    let client = aws_sdk_sqs::Client::new(&moto_sdk_config().await);
    let ensured = SqsQueue::ensure(
        client.clone(),
        "hunter-contract",
        visibility,
        max_receive_count,
    )
    .await
    .unwrap_or_else(|e| panic!("create queue: {e}"));
    // Found again by URL alone, as the functions do: the dead-letter queue comes from the RedrivePolicy.
    let queue = SqsQueue::from_url(client, ensured.url())
        .await
        .unwrap_or_else(|e| panic!("open queue: {e}"));
    QueueFixture {
        queue: Arc::new(queue),
        _moto: Some(guard),
        _dir: None,
    }
}
