//! push-dynamics against the Dataverse simulator: create, duplicate, adoption, permanent and
//! retryable failures, with the lead's sync state and audit trail.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use hunter_local::sim::control::SimControl as _;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore};
use hunter_core::dynamics::{DataverseAuth, DataverseClient, DataverseLeadSink};
use hunter_core::http::TokenEndpoint;
use hunter_core::messages::{PushMessage, ReferralMessage};
use hunter_core::ports::{FailureStore, LeadStore, Queue};
use hunter_core::ports::{LeadSink, LeadUpsert};
use hunter_core::retry::Backoff;
use hunter_domain::crm::DynamicsMapping;
use hunter_domain::model::{Lead, SyncStatus};
use hunter_domain::rules::{Rules, normalize_domain};
use hunter_local::sim::dataverse::{
    DataverseConfig, DataverseSim, Faults, Limits, RunningDataverse,
};
use ingest_referral::{DomainTurns, IngestDeps, ingest_message};
use push_dynamics::{PushDeps, PushOutcome, handle_batch, push_message};
use serde_json::json;

struct Fixture {
    store: EmbeddedStore,
    push_queue: EmbeddedQueue,
    dataverse: RunningDataverse,
    sink: DataverseLeadSink,
}

impl Fixture {
    async fn start(config: DataverseConfig) -> Self {
        Self::start_with_retries(config, 1).await
    }

    async fn start_with_retries(config: DataverseConfig, max_retries: u32) -> Self {
        let (client_id, client_secret) = (config.client_id.clone(), config.client_secret.clone());
        let dataverse = DataverseSim::new(config)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let endpoint =
            TokenEndpoint::new(http.clone(), &dataverse.token_url, client_id, client_secret);
        let auth = DataverseAuth::new(endpoint, &dataverse.base_url);
        let backoff = Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_retries,
        };
        let client = DataverseClient::new(http, &dataverse.base_url, auth, backoff).unwrap();
        let sink = DataverseLeadSink::new(client, DynamicsMapping::embedded());
        Self {
            store: EmbeddedStore::new(),
            push_queue: EmbeddedQueue::new("push", Duration::from_secs(60), 5),
            dataverse,
            sink,
        }
    }

    fn deps(&self) -> PushDeps<'_> {
        PushDeps {
            store: &self.store,
            sink: &self.sink,
            mapping: DynamicsMapping::embedded(),
            queue: Some(&self.push_queue),
            write_back: None,
            opportunities: true,
            max_receives: None,
        }
    }

    /// Ingests a referral for `domain` (so a lead and a push message exist); returns the message.
    async fn ingest(&self, id: &str, domain: &str) -> String {
        let referral = json!({
            "id": id, "status": "New", "substatus": "Pending", "direction": "Incoming",
            "updatedDateTime": "2026-11-01T08:00:00Z",
            "customerProfile": {"name": "Contoso Ltd", "team": [{"firstName": "Ada", "lastName": "Lovelace", "email": format!("ada@{domain}")}]},
            "details": {"dealValue": 5000, "notes": "40 mailboxes"}
        });
        self.ingest_referral(referral).await
    }

    /// Ingests `referral` (making its lead and a push request); returns the push message body.
    async fn ingest_referral(&self, referral: serde_json::Value) -> String {
        let scanner = hunter_tests::scanner();
        let deps = IngestDeps {
            store: &self.store,
            push_queue: &self.push_queue,
            scanner: &scanner,
            rules: Rules::embedded(),
            rescan_after: hunter_tests::RESCAN_AFTER,
            send_backoff: Backoff::default(),
            max_receives: None,
            referrals_queue: None,
            turns: &DomainTurns::default(),
        };
        ingest_message(
            &deps,
            &ReferralMessage {
                run_id: None,
                arrived_by: Default::default(),
                referral,
            }
            .to_body(),
        )
        .await
        .unwrap();
        let received = self
            .push_queue
            .receive(10, None, Duration::ZERO)
            .await
            .unwrap();
        received.last().unwrap().body.clone()
    }

    async fn lead(&self, domain: &str) -> Lead {
        self.store
            .get_lead(&normalize_domain(domain).unwrap())
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test]
async fn a_push_creates_the_lead_once_and_a_duplicate_message_is_skipped() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let message = f.ingest("r1", "contoso.com").await;

    let first = push_message(&f.deps(), &message).await.unwrap();
    let requests_after_first = f.dataverse.sim.requests().len();
    let second = push_message(&f.deps(), &message).await.unwrap();

    assert!(
        matches!(first, PushOutcome::Synced(ref p) if p.created && !p.adopted),
        "{first:?}"
    );
    assert_eq!(second, PushOutcome::Skipped("already synced"));
    assert_eq!(
        f.dataverse.sim.requests().len(),
        requests_after_first,
        "the duplicate never reached Dynamics"
    );
    let leads = f.dataverse.sim.records("leads");
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["hnt_hunterkey"], "contoso.com");
    assert_eq!(leads[0]["subject"], "Hunter: contoso.com");
    assert_eq!(leads[0]["emailaddress1"], "ada@contoso.com");
    assert_eq!(leads[0]["lastname"], "Lovelace");
    let lead = f.lead("contoso.com").await;
    assert_eq!(lead.sync_status, SyncStatus::Synced);
    assert_eq!(lead.dynamics_id.as_deref(), leads[0]["leadid"].as_str());
    assert_eq!(lead.sync_attempts, 1);
    assert!(lead.last_synced_at.is_some() && lead.last_error.is_none());
    let audit = f.store.list_audit(&lead.domain, 10).await.unwrap();
    assert_eq!(
        (
            audit.len(),
            audit[0].action.as_str(),
            audit[0].result.as_str()
        ),
        (1, "upsert", "synced")
    );
}

#[tokio::test]
async fn a_lead_created_by_hand_in_dynamics_is_adopted_not_duplicated() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let by_hand = f.dataverse.sim.insert_record("leads", json!({"companyname": "Contoso (sales rep)", "lastname": "Rep", "websiteurl": "https://www.contoso.com"}));
    let message = f.ingest("r1", "contoso.com").await;

    let outcome = push_message(&f.deps(), &message).await.unwrap();

    assert!(
        matches!(outcome, PushOutcome::Synced(ref p) if p.adopted && p.id == by_hand),
        "{outcome:?}"
    );
    let leads = f.dataverse.sim.records("leads");
    assert_eq!(leads.len(), 1, "{leads:?}");
    assert_eq!(leads[0]["hnt_hunterkey"], "contoso.com");
    assert_eq!(leads[0]["subject"], "Hunter: contoso.com");
    let audit = f
        .store
        .list_audit(&normalize_domain("contoso.com").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(audit[0].action, "adopt");
}

#[tokio::test]
async fn records_made_by_hand_for_a_subdomain_site_or_mailbox_are_adopted_by_their_registrable_domain()
 {
    for (n, by_hand) in [
        json!({"lastname": "Rep", "websiteurl": "https://shop.contoso.com/en"}),
        json!({"lastname": "Rep", "emailaddress1": "ada@mail.contoso.com"}),
    ]
    .into_iter()
    .enumerate()
    {
        let f = Fixture::start(DataverseConfig::default()).await;
        let id = f.dataverse.sim.insert_record("leads", by_hand.clone());
        f.dataverse.sim.insert_record(
            "leads",
            json!({"lastname": "Other", "websiteurl": "https://contoso.com.evil.example"}),
        );
        let message = f.ingest(&format!("r{n}"), "contoso.com").await;

        let outcome = push_message(&f.deps(), &message).await.unwrap();

        assert!(
            matches!(outcome, PushOutcome::Synced(ref p) if p.adopted && p.id == id),
            "{by_hand}: {outcome:?}"
        );
        assert_eq!(f.dataverse.sim.records("leads").len(), 2, "{by_hand}");
    }
}

#[tokio::test]
async fn a_validation_error_is_recorded_as_failed_and_acknowledged() {
    let mut config = DataverseConfig::default();
    config.column_limits.insert("companyname".to_owned(), 5);
    let f = Fixture::start(config).await;
    let message = f.ingest("r1", "contoso.com").await;
    let mut event = SqsEvent::default();
    let mut record = SqsMessage::default();
    record.message_id = Some("m1".into());
    record.body = Some(message);
    event.records = vec![record];

    let response = handle_batch(&f.deps(), event).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "permanent: not retried"
    );
    let lead = f.lead("contoso.com").await;
    assert_eq!(lead.sync_status, SyncStatus::Failed);
    assert!(
        lead.last_error.as_deref().unwrap().contains("0x80044331"),
        "{:?}",
        lead.last_error
    );
    assert!(f.dataverse.sim.records("leads").is_empty());
    let audit = f.store.list_audit(&lead.domain, 10).await.unwrap();
    assert_eq!(audit[0].result, "failed");
}

/// An SQS event of `messages` as Lambda delivers them (ids, receipts, receive counts).
fn event_of(messages: &[hunter_core::ports::ReceivedMessage]) -> SqsEvent {
    hunter_local::worker::sqs_event(messages)
}

/// What Lambda does with a batch's answer: deletes every message not named a failure.
async fn acknowledge(
    queue: &dyn Queue,
    messages: &[hunter_core::ports::ReceivedMessage],
    response: &aws_lambda_events::event::sqs::SqsBatchResponse,
) {
    for m in messages {
        if !response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == m.message_id)
        {
            queue.delete(&m.receipt).await.unwrap();
        }
    }
}

#[tokio::test]
async fn throttling_beyond_the_retries_puts_the_push_off_without_using_up_a_receive() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let body = f.ingest("r1", "contoso.com").await;
    f.push_queue
        .send_batch(&[hunter_core::ports::OutgoingMessage::new("0", body)])
        .await
        .unwrap();
    let received = f.push_queue.receive(1, None, Duration::ZERO).await.unwrap();
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![429, 429, 429, 429, 429, 429],
        retry_after_secs: 1,
        ..Faults::default()
    });

    let response = handle_batch(&f.deps(), event_of(&received)).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "a throttled push is not a failure: {response:?}"
    );
    acknowledge(&f.push_queue, &received, &response).await;
    let lead = f.lead("contoso.com").await;
    assert_eq!(lead.sync_status, SyncStatus::Pending);
    assert_eq!(lead.sync_attempts, 1);
    assert!(lead.last_error.is_some());
    let audit = f.store.list_audit(&lead.domain, 10).await.unwrap();
    assert_eq!(audit[0].result, "retry");

    // A fresh copy waits out the Retry-After (1 s), received for the first time.
    tokio::time::pause();
    assert!(
        f.push_queue
            .receive(10, None, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::advance(Duration::from_millis(1100)).await;
    let copy = f
        .push_queue
        .receive(10, None, Duration::ZERO)
        .await
        .unwrap();
    tokio::time::resume();
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_eq!(copy[0].receive_count, 1);
    assert_eq!(PushMessage::from_body(&copy[0].body).unwrap().deferrals, 1);

    // Once Dynamics answers again, the copy syncs the lead.
    f.dataverse.sim.set_faults(Faults::default());
    let again = push_message(&f.deps(), &copy[0].body).await.unwrap();
    assert!(matches!(again, PushOutcome::Synced(_)), "{again:?}");
    assert_eq!(f.lead("contoso.com").await.sync_status, SyncStatus::Synced);
    assert_eq!(f.dataverse.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn a_push_throttled_on_more_receives_than_the_queue_allows_is_never_dead_lettered() {
    let f = Fixture::start(DataverseConfig::default()).await;
    // Dead-letters after the second receive.
    let queue = EmbeddedQueue::new("push-strict", Duration::from_secs(60), 2);
    let body = f.ingest("r1", "contoso.com").await;
    queue
        .send_batch(&[hunter_core::ports::OutgoingMessage::new("0", body)])
        .await
        .unwrap();
    let deps = PushDeps {
        queue: Some(&queue),
        max_receives: Some(2),
        ..f.deps()
    };
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![429; 40],
        retry_after_secs: 0,
        ..Faults::default()
    });
    for round in 0..5 {
        let received = queue
            .receive(10, None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(received.len(), 1, "round {round}: the push is still queued");
        let response = handle_batch(&deps, event_of(&received)).await;
        acknowledge(&queue, &received, &response).await;
    }
    assert_eq!(queue.depth().await.unwrap().dead_letters, 0);

    f.dataverse.sim.set_faults(Faults::default());
    let received = queue
        .receive(10, None, Duration::from_secs(5))
        .await
        .unwrap();
    let response = handle_batch(&deps, event_of(&received)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(f.lead("contoso.com").await.sync_status, SyncStatus::Synced);
    assert_eq!(f.dataverse.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn a_push_whose_retry_after_outlasts_the_invocation_is_put_off_at_once() {
    // Five retries, each told to wait five minutes, inside an invocation with 3 s left.
    let f = Fixture::start_with_retries(DataverseConfig::default(), 5).await;
    let body = f.ingest("r1", "contoso.com").await;
    f.push_queue
        .send_batch(&[hunter_core::ports::OutgoingMessage::new("0", body)])
        .await
        .unwrap();
    let received = f.push_queue.receive(1, None, Duration::ZERO).await.unwrap();
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![429; 10],
        retry_after_secs: 300,
        ..Faults::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);

    let handled = tokio::time::timeout(
        Duration::from_secs(60),
        hunter_core::deadline::within(Some(deadline), handle_batch(&f.deps(), event_of(&received))),
    )
    .await;

    let response = handled.expect("the handler stops at the deadline instead of sleeping 300 s");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    acknowledge(&f.push_queue, &received, &response).await;
    assert_eq!(
        requests_to(&f, "PATCH", |_| true) + requests_to(&f, "GET", |_| true),
        1,
        "one request, then no retry that would outlive the invocation"
    );
    // The copy waits out the Retry-After (the fixture's own ingest left an unrelated message in
    // flight, which comes back after a minute: only put-off copies count here).
    let deferred = |messages: Vec<hunter_core::ports::ReceivedMessage>| {
        messages
            .iter()
            .filter(|m| PushMessage::from_body(&m.body).unwrap().deferrals == 1)
            .count()
    };
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(299)).await;
    let early = f
        .push_queue
        .receive(10, Some(Duration::from_secs(3600)), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deferred(early), 0);
    tokio::time::advance(Duration::from_secs(2)).await;
    let due = f
        .push_queue
        .receive(10, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deferred(due), 1);
}

#[tokio::test]
async fn without_a_queue_to_put_it_off_a_throttled_push_is_a_batch_failure() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let body = f.ingest("r1", "contoso.com").await;
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![429, 429],
        retry_after_secs: 1,
        ..Faults::default()
    });
    let deps = PushDeps {
        queue: None,
        ..f.deps()
    };

    let response = handle_batch(&deps, sqs_event(vec![body], vec![])).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    let failure = f
        .store
        .get_failure("dynamics-push", "m0")
        .await
        .unwrap()
        .unwrap();
    assert!(failure.error.contains("throttled"), "{failure:?}");
}

#[tokio::test]
async fn a_push_of_an_older_version_after_a_newer_one_is_skipped() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let old = f.ingest("r1", "contoso.com").await;
    let new = f.ingest("r2", "contoso.com").await;
    assert_ne!(old, new);

    assert!(matches!(
        push_message(&f.deps(), &new).await.unwrap(),
        PushOutcome::Synced(_)
    ));
    assert_eq!(
        push_message(&f.deps(), &old).await.unwrap(),
        PushOutcome::Skipped("already synced")
    );
    let message: PushMessage = serde_json::from_str(&new).unwrap();
    assert!(f.lead("contoso.com").await.synced_version >= Some(message.lead_version));
}

#[tokio::test]
async fn a_batch_of_pushes_runs_concurrently_under_throttling_and_lands_each_lead_once() {
    let limits = Limits {
        max_requests: 6,
        window: Duration::from_secs(1),
        retry_after_secs: 1,
        ..Limits::default()
    };
    let f = Fixture::start_with_retries(
        DataverseConfig {
            limits,
            // Each answer takes a moment, so requests sent together are in flight together.
            faults: Faults {
                latency_ms: 50,
                ..Faults::default()
            },
            ..DataverseConfig::default()
        },
        8,
    )
    .await;
    let mut event = SqsEvent::default();
    for n in 0..12 {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{n}"));
        record.body = Some(f.ingest(&format!("r{n}"), &format!("company{n}.com")).await);
        event.records.push(record);
    }

    let response = handle_batch(&f.deps(), event).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let records = f.dataverse.sim.records("leads");
    assert_eq!(records.len(), 12);
    for n in 0..12 {
        let key = format!("company{n}.com");
        assert_eq!(
            records
                .iter()
                .filter(|r| r["hnt_hunterkey"] == key.as_str())
                .count(),
            1,
            "{key}"
        );
        assert_eq!(f.lead(&key).await.sync_status, SyncStatus::Synced);
    }
    assert!(
        f.dataverse.sim.requests().iter().any(|r| r.status == 429),
        "the limit was reached"
    );
    assert!(
        f.dataverse.sim.peak_in_flight() > 1,
        "the first-push lookups ran concurrently: at most {} at once",
        f.dataverse.sim.peak_in_flight()
    );
}

#[tokio::test]
async fn two_pushes_of_one_lead_in_a_batch_leave_it_synced_and_in_dynamics_once() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let mut event = SqsEvent::default();
    for (n, id) in ["r1", "r2"].iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{n}"));
        record.body = Some(f.ingest(id, "contoso.com").await);
        event.records.push(record);
    }

    let response = handle_batch(&f.deps(), event).await;

    assert!(response.batch_item_failures.is_empty());
    let lead = f.lead("contoso.com").await;
    assert_eq!(
        lead.sync_status,
        SyncStatus::Synced,
        "a concurrent push of the same content is no pending change"
    );
    assert_eq!(lead.synced_version, Some(lead.content_version));
    assert_eq!(f.dataverse.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn with_write_back_the_dynamics_id_lands_on_the_referral_in_partner_center() {
    use hunter_core::config::Config;
    use hunter_core::credentials::Credentials;
    use hunter_local::sim::partner_center::{PartnerCenterSim, SimConfig};

    let f = Fixture::start(DataverseConfig::default()).await;
    let referral = json!({
        "id": "wb-1", "status": "Active", "substatus": "Accepted", "direction": "Incoming",
        "updatedDateTime": "2026-11-01T08:00:00Z", "eTag": "\"v1\"", "externalReferenceId": null,
        "customerProfile": {"name": "Contoso Ltd", "team": [{"email": "ada@contoso.com"}]}
    });
    let sim_config = SimConfig::default();
    let refresh = sim_config.initial_refresh_token.clone();
    let pc = PartnerCenterSim::new(vec![referral.clone()], sim_config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let config = Config {
        partner_center_url: pc.base_url.clone(),
        partner_center_token_url: pc.token_url.clone(),
        ..Config::from_vars(Vec::new()).unwrap()
    };
    let credentials = Credentials {
        pc_client_id: "t".into(),
        pc_refresh_token: refresh,
        ..Credentials::default()
    };
    let client = hunter_core::wiring::partner_center(
        reqwest::Client::new(),
        &config,
        &credentials,
        std::sync::Arc::new(hunter_core::adapters::MemoryRefreshTokenStore::new()),
    )
    .unwrap();
    let message = f.ingest_referral(referral).await;
    let deps = PushDeps {
        write_back: Some(&client),
        ..f.deps()
    };

    let outcome = push_message(&deps, &message).await.unwrap();

    let PushOutcome::Synced(pushed) = outcome else {
        panic!("{outcome:?}")
    };
    let stored = pc
        .sim
        .referrals()
        .into_iter()
        .find(|r| r["id"] == "wb-1")
        .unwrap();
    assert_eq!(stored["externalReferenceId"], pushed.id.as_str());
    assert_ne!(
        stored["eTag"], "\"v1\"",
        "Partner Center gave it a new eTag"
    );
    let audit = f
        .store
        .list_audit(&normalize_domain("contoso.com").unwrap(), 10)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "write_back" && a.result == "done"),
        "{audit:?}"
    );

    // Our stored eTag is now stale: a forced push's write-back is refused (412), audited, and the
    // push itself still counts.
    let forced = PushMessage {
        force: true,
        ..serde_json::from_str(&message).unwrap()
    }
    .to_body();
    let again = push_message(&deps, &forced).await.unwrap();
    assert!(matches!(again, PushOutcome::Synced(_)));
    let audit = f
        .store
        .list_audit(&normalize_domain("contoso.com").unwrap(), 10)
        .await
        .unwrap();
    let refused = audit
        .iter()
        .find(|a| a.action == "write_back" && a.result == "failed")
        .expect("a refused write-back");
    assert!(
        refused.detail.as_deref().unwrap().contains("412"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_accepted_referral_becomes_a_linked_account_contact_and_opportunity_once() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let accepted = json!({
        "id": "acc-1", "name": "Contoso - M365 migration", "status": "Active", "substatus": "Accepted",
        "direction": "Incoming", "updatedDateTime": "2026-11-02T08:00:00Z",
        "customerProfile": {"name": "Contoso Ltd", "team": [{"firstName": "Ada", "lastName": "Lovelace", "email": "ada@contoso.com"}]},
        "details": {"dealValue": 50000}
    });
    let message = f.ingest_referral(accepted).await;

    assert!(matches!(
        push_message(&f.deps(), &message).await.unwrap(),
        PushOutcome::Synced(_)
    ));
    let forced = PushMessage {
        force: true,
        ..serde_json::from_str(&message).unwrap()
    }
    .to_body();
    assert!(matches!(
        push_message(&f.deps(), &forced).await.unwrap(),
        PushOutcome::Synced(_)
    ));

    let sim = &f.dataverse.sim;
    let (accounts, contacts, opportunities) = (
        sim.records("accounts"),
        sim.records("contacts"),
        sim.records("opportunities"),
    );
    assert_eq!(
        (accounts.len(), contacts.len(), opportunities.len()),
        (1, 1, 1),
        "a second push upserts the same records"
    );
    assert_eq!(accounts[0]["hnt_hunterkey"], "contoso.com");
    assert_eq!(contacts[0]["hnt_hunterkey"], "ada@contoso.com");
    assert_eq!(
        contacts[0]["_parentcustomerid_account_value"],
        accounts[0]["accountid"]
    );
    let opportunity = &opportunities[0];
    assert_eq!(opportunity["hnt_hunterkey"], "acc-1");
    assert_eq!(opportunity["estimatedvalue"], 50000.0);
    assert_eq!(
        opportunity["_customerid_account_value"],
        accounts[0]["accountid"]
    );
    assert_eq!(
        opportunity["_parentcontactid_value"],
        contacts[0]["contactid"]
    );
    let audit = f
        .store
        .list_audit(&normalize_domain("contoso.com").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "opportunity" && a.result == "synced")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_new_referral_makes_no_opportunity() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let message = f.ingest("r1", "contoso.com").await;
    assert!(matches!(
        push_message(&f.deps(), &message).await.unwrap(),
        PushOutcome::Synced(_)
    ));
    assert!(f.dataverse.sim.records("opportunities").is_empty());
    assert!(f.dataverse.sim.records("accounts").is_empty());
}

#[tokio::test]
async fn a_refused_opportunity_change_set_leaves_nothing_behind_and_is_audited() {
    let mut config = DataverseConfig::default();
    config.column_limits.insert("name".to_owned(), 3);
    let f = Fixture::start(config).await;
    let accepted = json!({
        "id": "acc-1", "status": "Active", "substatus": "Accepted", "direction": "Incoming",
        "updatedDateTime": "2026-11-02T08:00:00Z",
        "customerProfile": {"name": "Contoso Ltd", "team": [{"email": "ada@contoso.com"}]}
    });
    let message = f.ingest_referral(accepted).await;

    let outcome = push_message(&f.deps(), &message).await.unwrap();

    assert!(
        matches!(outcome, PushOutcome::Synced(_)),
        "the lead itself went through: {outcome:?}"
    );
    let sim = &f.dataverse.sim;
    assert!(
        sim.records("accounts").is_empty()
            && sim.records("contacts").is_empty()
            && sim.records("opportunities").is_empty()
    );
    let audit = f
        .store
        .list_audit(&normalize_domain("contoso.com").unwrap(), 10)
        .await
        .unwrap();
    let failed = audit.iter().find(|a| a.action == "opportunity").unwrap();
    assert_eq!(failed.result, "failed");
}

#[tokio::test]
async fn a_token_that_expires_in_the_middle_of_a_batch_is_renewed_and_every_lead_lands() {
    let f = Fixture::start(DataverseConfig {
        faults: Faults {
            latency_ms: 150,
            ..Faults::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let mut event = SqsEvent::default();
    for n in 0..8 {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{n}"));
        record.body = Some(f.ingest(&format!("r{n}"), &format!("company{n}.com")).await);
        event.records.push(record);
    }
    let sim = f.dataverse.sim.clone();
    let expire = tokio::spawn(async move {
        // Once the first requests are answered (8 lookups for hand-made records, 150 ms each,
        // 4 at a time, then one $batch).
        while sim.requests().iter().filter(|r| r.status < 300).count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sim.expire_all_tokens();
    });

    let response = handle_batch(&f.deps(), event).await;
    expire.await.unwrap();

    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(f.dataverse.sim.records("leads").len(), 8);
    let statuses: Vec<u16> = f
        .dataverse
        .sim
        .requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.contains(&401),
        "the expiry hit requests in flight: {statuses:?}"
    );
    // The audit trail says what happened, never with what credentials.
    let secret = DataverseConfig::default().client_secret.expose().to_owned();
    for n in 0..8 {
        let lead = f.lead(&format!("company{n}.com")).await;
        for entry in f.store.list_audit(&lead.domain, 10).await.unwrap() {
            let text = serde_json::to_string(&entry).unwrap();
            assert!(
                !text.contains(&secret) && !text.contains("Bearer"),
                "{text}"
            );
        }
    }
}

/// An SQS event of `bodies`, with message ids `m0`, `m1`, ... (and receipts, when given).
fn sqs_event(bodies: Vec<String>, receipts: Vec<String>) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (n, body) in bodies.into_iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{n}"));
        record.receipt_handle = receipts.get(n).cloned();
        record.body = Some(body);
        event.records.push(record);
    }
    event
}

/// How many requests the simulator received with `method` and a path matching `path`.
fn requests_to(f: &Fixture, method: &str, path: impl Fn(&str) -> bool) -> usize {
    f.dataverse
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == method && path(&r.path))
        .count()
}

fn batch_posts(f: &Fixture) -> usize {
    requests_to(f, "POST", |p| p.ends_with("$batch"))
}

fn lead_patches(f: &Fixture) -> usize {
    requests_to(f, "PATCH", |p| p.contains("/leads("))
}

#[tokio::test]
async fn when_a_batch_holds_several_leads_should_upsert_them_in_one_dollar_batch_and_fail_only_the_refused_one()
 {
    let mut config = DataverseConfig::default();
    config.column_limits.insert("companyname".to_owned(), 20);
    let f = Fixture::start(config).await;
    let mut bodies = Vec::new();
    for n in 0..5 {
        bodies.push(f.ingest(&format!("r{n}"), &format!("company{n}.com")).await);
    }
    bodies.push(
        f.ingest_referral(json!({
            "id": "r-long", "status": "New", "substatus": "Pending", "direction": "Incoming",
            "updatedDateTime": "2026-11-01T08:00:00Z",
            "customerProfile": {"name": "A company name far longer than twenty characters",
                                "team": [{"lastName": "Long", "email": "ada@longname.com"}]}
        }))
        .await,
    );
    f.dataverse.sim.clear_requests();

    let response = handle_batch(&f.deps(), sqs_event(bodies, Vec::new())).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "a validation error is permanent: {:?}",
        response.batch_item_failures
    );
    assert_eq!(batch_posts(&f), 1, "{:?}", f.dataverse.sim.requests());
    assert_eq!(lead_patches(&f), 0, "no lead upserted on its own");
    let records = f.dataverse.sim.records("leads");
    assert_eq!(records.len(), 5, "the refused lead rolled back alone");
    for n in 0..5 {
        let lead = f.lead(&format!("company{n}.com")).await;
        assert_eq!(lead.sync_status, SyncStatus::Synced);
        assert!(
            records
                .iter()
                .any(|r| r["leadid"].as_str() == lead.dynamics_id.as_deref())
        );
    }
    let refused = f.lead("longname.com").await;
    assert_eq!(refused.sync_status, SyncStatus::Failed);
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap()
            .contains("0x80044331"),
        "{:?}",
        refused.last_error
    );
}

#[tokio::test]
async fn when_a_whole_dollar_batch_is_throttled_should_put_every_lead_off_until_retry_after_passed()
{
    let f = Fixture::start(DataverseConfig::default()).await;
    let queue = EmbeddedQueue::new("push-short", Duration::from_millis(500), 5);
    let mut bodies = Vec::new();
    for n in 0..3 {
        let body = f.ingest(&format!("r{n}"), &format!("company{n}.com")).await;
        queue
            .send_batch(&[hunter_core::ports::OutgoingMessage::new("0", body)])
            .await
            .unwrap();
    }
    let received = queue.receive(10, None, Duration::ZERO).await.unwrap();
    bodies.extend(received.iter().map(|m| m.body.clone()));
    let receipts = received.iter().map(|m| m.receipt.clone()).collect();
    // Every lead's first push looks for a hand-made record (3 GETs), then one $batch: refuse it
    // and its one retry.
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![200, 200, 200, 429, 429],
        retry_after_secs: 2,
        ..Faults::default()
    });
    let deps = PushDeps {
        queue: Some(&queue),
        ..f.deps()
    };

    let response = handle_batch(&deps, sqs_event(bodies, receipts)).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for m in &received {
        queue.delete(&m.receipt).await.unwrap();
    }
    assert_eq!(
        batch_posts(&f),
        2,
        "the $batch and its one retry were refused"
    );
    assert!(f.dataverse.sim.records("leads").is_empty());
    for n in 0..3 {
        let lead = f.lead(&format!("company{n}.com")).await;
        assert_eq!(lead.sync_status, SyncStatus::Pending);
        assert!(lead.last_error.is_some());
    }
    // Each push was put off by the Retry-After (2 s) as a fresh message. The clock stops here
    // and moves only as the test says, however loaded the machine is.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert!(
        queue
            .receive(10, None, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::advance(Duration::from_millis(1100)).await;
    let copies = queue.receive(10, None, Duration::ZERO).await.unwrap();
    assert_eq!(copies.len(), 3);
    assert!(copies.iter().all(|m| m.receive_count == 1));
}

#[tokio::test]
async fn when_more_leads_than_a_dollar_batch_holds_should_split_them_into_batches_of_1000() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let leads: Vec<LeadUpsert> = (0..1001)
        .map(|n| {
            let domain = format!("company{n}.example");
            let record = json!({"companyname": format!("Company {n}"), "lastname": "Hunter",
                                "subject": format!("Hunter: {domain}")});
            LeadUpsert {
                key: domain.clone(),
                domain,
                record: record.as_object().unwrap().clone(),
                adopt: false,
            }
        })
        .collect();

    let results = f.sink.upsert_leads(&leads).await;

    assert_eq!(results.len(), 1001);
    assert!(results.iter().all(|r| matches!(r, Ok(p) if p.created)));
    assert_eq!(batch_posts(&f), 2);
    assert_eq!(f.dataverse.sim.records("leads").len(), 1001);
}

#[tokio::test]
async fn when_dataverse_hints_its_parallelism_should_stay_within_it_without_a_429() {
    let f = Fixture::start(DataverseConfig {
        dop_hint: 2,
        limits: Limits {
            max_concurrent: 2,
            ..Limits::default()
        },
        faults: Faults {
            latency_ms: 30,
            ..Faults::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    // One push teaches the client the hint.
    let first = f.ingest("r-first", "first.com").await;
    assert!(matches!(
        push_message(&f.deps(), &first).await.unwrap(),
        PushOutcome::Synced(_)
    ));
    let mut bodies = Vec::new();
    for n in 0..10 {
        bodies.push(f.ingest(&format!("r{n}"), &format!("company{n}.com")).await);
    }

    // Ten first pushes: ten lookups for hand-made records, two at a time, then one $batch.
    let response = handle_batch(&f.deps(), sqs_event(bodies, Vec::new())).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(f.dataverse.sim.records("leads").len(), 11);
    assert!(requests_to(&f, "GET", |_| true) >= 10, "the lookups ran");
    let requests = f.dataverse.sim.requests();
    assert!(
        requests.iter().all(|r| r.status != 429),
        "never more than the hinted two at once: {:?}",
        requests
            .iter()
            .filter(|r| r.status == 429)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn when_a_dollar_batch_is_refused_as_a_whole_should_upsert_each_lead_on_its_own() {
    let f = Fixture::start(DataverseConfig::default()).await;
    let mut bodies = Vec::new();
    for n in 0..3 {
        bodies.push(f.ingest(&format!("r{n}"), &format!("company{n}.com")).await);
    }
    // Three lookups for hand-made records pass; the $batch itself is answered 400.
    f.dataverse.sim.set_faults(Faults {
        fail_next: vec![200, 200, 200, 400],
        ..Faults::default()
    });

    let response = handle_batch(&f.deps(), sqs_event(bodies, Vec::new())).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((batch_posts(&f), lead_patches(&f)), (1, 3));
    assert_eq!(f.dataverse.sim.records("leads").len(), 3);
    for n in 0..3 {
        let lead = f.lead(&format!("company{n}.com")).await;
        assert_eq!(
            lead.sync_status,
            SyncStatus::Synced,
            "not failed for the batch's sake"
        );
    }
}

#[tokio::test]
async fn with_two_application_users_a_bulk_push_is_spread_over_both_and_lands_each_lead_once() {
    use hunter_core::config::{Config, RequestLimit};
    use hunter_core::credentials::Credentials;
    use hunter_core::secret::Secret;

    // Ten requests per second per user: fifty first pushes (a lookup each, then $batch parts)
    // fill several windows.
    let limit = RequestLimit {
        requests: 10,
        window: Duration::from_secs(1),
    };
    let mut f = Fixture::start(DataverseConfig {
        client_id: "app-one".to_owned(),
        client_secret: Secret::new("secret-one"),
        extra_clients: vec![("app-two".to_owned(), Secret::new("secret-two"))],
        limits: Limits {
            max_requests: limit.requests,
            window: limit.window,
            retry_after_secs: 1,
            ..Limits::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let config = Config {
        dynamics_url: Some(f.dataverse.base_url.clone()),
        dynamics_token_url: Some(f.dataverse.token_url.clone()),
        d365_request_limit: Some(limit),
        ..Config::from_vars(Vec::new()).unwrap()
    };
    let credentials = Credentials {
        d365_clients: Secret::new(
            json!([
                {"clientId": "app-one", "clientSecret": "secret-one"},
                {"clientId": "app-two", "clientSecret": "secret-two"}
            ])
            .to_string(),
        ),
        ..Credentials::default()
    };
    f.sink = hunter_core::wiring::dataverse_sink(
        reqwest::Client::new(),
        &config,
        &credentials,
        DynamicsMapping::embedded(),
    )
    .unwrap();
    let mut bodies = Vec::new();
    for n in 0..50 {
        bodies.push(f.ingest(&format!("r{n}"), &format!("spread{n}.com")).await);
    }

    for chunk in bodies.chunks(10) {
        let response = handle_batch(&f.deps(), sqs_event(chunk.to_vec(), Vec::new())).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    let usage = f.dataverse.sim.usage();
    assert!(
        usage["app-one"].requests > 0 && usage["app-two"].requests > 0,
        "both users pushed: {usage:?}"
    );
    assert_eq!(f.dataverse.sim.records("leads").len(), 50);
    assert_eq!(f.dataverse.sim.duplicates("leads"), 0);
    for n in 0..50 {
        assert_eq!(
            f.lead(&format!("spread{n}.com")).await.sync_status,
            SyncStatus::Synced
        );
    }
}
