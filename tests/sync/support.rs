//! A Partner Center simulator, embedded store and queues, and the real client, wired like
//! hunter-local wires them.

use hunter_local::sim::control::SimControl as _;
use std::sync::Arc;
use std::time::Duration;

use fetch_referrals::{FetchDeps, FetchSettings, FetchSummary, fetch_referrals};
use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore, MemoryRefreshTokenStore, StaticScanner};
use hunter_core::config::Config;
use hunter_core::credentials::Credentials;
use hunter_core::messages::ReferralMessage;
use hunter_core::partner_center::PartnerCenterClient;
use hunter_core::ports::{Queue, ReceivedMessage, ReferralQuery, Store, SyncStore as _};
use hunter_core::retry::Backoff;
use hunter_core::wiring;
use hunter_domain::model::{ReferralRecord, SyncRun};
use hunter_domain::rules::Rules;
use hunter_domain::rules::SkipReason;
use hunter_local::sim::partner_center::{PartnerCenterSim, RunningSim, SimConfig};
use ingest_referral::{DomainTurns, IngestDeps};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Referral `n` of a test set: incoming, new, a company contact, updated `n` minutes after 08:00.
pub fn referral(n: usize) -> Value {
    json!({
        "id": format!("ref-{n:04}"),
        "engagementId": format!("eng-{n:04}"),
        "name": format!("Referral {n}"),
        "createdDateTime": "2026-11-01T08:00:00Z",
        "updatedDateTime": format!("2026-11-01T{:02}:{:02}:00.1234567Z", 8 + n / 60, n % 60),
        "status": "New",
        "substatus": "Pending",
        "type": "Independent",
        "direction": "Incoming",
        "eTag": format!("\"etag-{n}\""),
        "customerProfile": {
            "name": format!("Company {}", n % 7),
            "address": {"country": "DE"},
            "team": [{"firstName": "Ada", "email": format!("ada@company{}.de", n % 7)}],
            "ids": []
        },
        "details": {"dealValue": 1000, "currency": "EUR"},
        "team": [{"email": "seller@partner.example"}]
    })
}

pub fn referrals(count: usize) -> Vec<Value> {
    (0..count).map(referral).collect()
}

/// Everything a sync test needs.
#[allow(missing_debug_implementations)]
pub struct SyncFixture {
    pub store: Arc<EmbeddedStore>,
    pub queue: Arc<EmbeddedQueue>,
    pub push_queue: Arc<EmbeddedQueue>,
    pub sim: RunningSim,
    pub client: PartnerCenterClient,
    /// Where the client keeps the rotated refresh token.
    pub tokens: Arc<MemoryRefreshTokenStore>,
    pub settings: FetchSettings,
    pub rules: &'static Rules,
    pub scanner: StaticScanner,
    pub turns: DomainTurns,
}

impl SyncFixture {
    pub async fn start(referrals: Vec<Value>, sim_config: SimConfig) -> Self {
        let refresh_token = sim_config.initial_refresh_token.clone();
        let sim = PartnerCenterSim::new(referrals, sim_config)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let store = Arc::new(EmbeddedStore::new());
        let config = Config {
            partner_center_url: sim.base_url.clone(),
            partner_center_token_url: sim.token_url.clone(),
            ..Config::from_vars(Vec::new()).unwrap()
        };
        let credentials = Credentials {
            pc_client_id: "hunter-tests".to_owned(),
            pc_refresh_token: refresh_token,
            ..Credentials::default()
        };
        let tokens = Arc::new(MemoryRefreshTokenStore::new());
        let client = wiring::partner_center(
            wiring::http_client().unwrap(),
            &config,
            &credentials,
            tokens.clone(),
        )
        .unwrap();
        Self {
            store,
            queue: Arc::new(EmbeddedQueue::new(
                "hunter-referrals",
                Duration::from_secs(60),
                5,
            )),
            push_queue: Arc::new(EmbeddedQueue::new(
                "hunter-dynamics-push",
                Duration::from_secs(60),
                5,
            )),
            sim,
            client,
            tokens,
            settings: FetchSettings {
                page_size: 100,
                send_backoff: Backoff {
                    base: Duration::from_millis(1),
                    cap: Duration::from_millis(5),
                    max_retries: 3,
                },
                ..FetchSettings::default()
            },
            rules: Rules::embedded(),
            scanner: hunter_tests::scanner(),
            turns: DomainTurns::default(),
        }
    }

    pub async fn fetch(&self) -> FetchSummary {
        self.fetch_until(None).await
    }

    pub async fn fetch_until(&self, deadline: Option<Instant>) -> FetchSummary {
        fetch_referrals(&self.fetch_deps(), None, deadline)
            .await
            .unwrap()
    }

    pub fn fetch_deps(&self) -> FetchDeps<'_> {
        FetchDeps {
            store: self.store.as_ref(),
            queue: self.queue.as_ref(),
            source: &self.client,
            settings: &self.settings,
        }
    }

    /// Statuses the simulator answered to referral requests, in order.
    pub fn referral_statuses(&self) -> Vec<u16> {
        self.sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.contains("referrals"))
            .map(|r| r.status)
            .collect()
    }

    pub fn ingest_deps(&self) -> IngestDeps<'_> {
        IngestDeps {
            store: self.store.as_ref(),
            push_queue: self.push_queue.as_ref(),
            scanner: &self.scanner,
            rules: self.rules,
            rescan_after: hunter_tests::RESCAN_AFTER,
            send_backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
                max_retries: 2,
            },
            max_receives: None,
            referrals_queue: None,
            turns: &self.turns,
        }
    }

    /// Every message on the referrals queue (left in flight).
    pub async fn queued(&self) -> Vec<ReceivedMessage> {
        take_all(self.queue.as_ref()).await
    }

    /// The referral ids on the referrals queue.
    pub async fn queued_ids(&self) -> Vec<String> {
        self.queued()
            .await
            .iter()
            .map(|m| {
                ReferralMessage::from_body(&m.body).unwrap().referral["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The stored sync run `id` (it must exist).
    pub async fn sync_run(&self, id: &str) -> SyncRun {
        self.store.get_sync_run(id).await.unwrap().unwrap()
    }
}

/// The stored `invalid_payload` records.
pub async fn invalid_referrals(store: &dyn Store) -> Vec<ReferralRecord> {
    let query = ReferralQuery {
        skip_reason: Some(SkipReason::InvalidPayload),
        ..ReferralQuery::default()
    };
    store.list_referrals(&query).await.unwrap().items
}

pub async fn take_all(queue: &dyn Queue) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue
            .receive(10, Some(Duration::from_secs(600)), Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}
