//! Helpers shared by the workspace-level contract and end-to-end tests.
//!
//! Tests against moto server read its address from `HUNTER_MOTO_URL`, which
//! `scripts/with-moto.sh` (run by `make test` and `make test-moto`) sets.

use std::sync::Arc;
use std::time::Duration;

use hunter_core::adapters::{DynamoStore, EmbeddedQueue, EmbeddedStore, SqsQueue};
use hunter_core::ports::{Queue, Store};
use tokio::sync::{Mutex, MutexGuard};

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
}

#[allow(
    missing_debug_implementations,
    reason = "holds trait objects and a lock guard"
)]
/// A queue under test and what keeps its backend to itself.
pub struct QueueFixture {
    pub queue: Arc<dyn Queue>,
    _moto: Option<MutexGuard<'static, ()>>,
}

pub async fn embedded_store() -> StoreFixture {
    StoreFixture {
        store: Arc::new(EmbeddedStore::new()),
        _moto: None,
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
    }
}
