//! ingest-referral: versions, poison input, transient failures, leads and pushes, run counters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use std::collections::HashMap;

use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore, Otherwise, StaticScanner};
use hunter_core::messages::{PushMessage, ReferralMessage};
use hunter_core::ports::{FailureStore, MessageFailure, PayloadStore, RunCount, StoreError};
use hunter_core::ports::{
    LeadQuery, LeadStore, Page, ReferralQuery, ReferralStore, SyncStore, UpsertOutcome,
};
use hunter_core::retry::Backoff;
use hunter_domain::model::{AuditEntry, Lead, LeadReferral, ReferralRecord, SyncRun, SyncState};
use hunter_domain::rules::{Domain, Rules, SkipReason, normalize_domain};
use hunter_domain::scan::{DnsAnswers, MxRecord, ScanState};
use ingest_referral::{DomainTurns, IngestDeps, handle_batch, ingest_message};
use serde_json::{Value, json};

use crate::support::{SyncFixture, referral, referrals, take_all};

fn event(bodies: &[(&str, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .map(|(id, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some((*id).to_owned());
            m.body = Some(body.clone());
            m
        })
        .collect();
    event
}

fn envelope(run_id: Option<&str>, referral: Value) -> String {
    ReferralMessage {
        run_id: run_id.map(str::to_owned),
        arrived_by: Default::default(),
        referral,
    }
    .to_body()
}

struct Deps<S = EmbeddedStore> {
    store: S,
    push: EmbeddedQueue,
    scanner: StaticScanner,
    turns: DomainTurns,
}

impl Deps {
    fn new() -> Self {
        Self::over(EmbeddedStore::new())
    }
}

impl<S: hunter_core::ports::Store> Deps<S> {
    fn over(store: S) -> Self {
        Self {
            store,
            push: EmbeddedQueue::new("push", Duration::from_secs(60), 5),
            scanner: hunter_tests::scanner(),
            turns: DomainTurns::default(),
        }
    }
    fn ingest(&self) -> IngestDeps<'_> {
        IngestDeps {
            turns: &self.turns,
            store: &self.store,
            push_queue: &self.push,
            scanner: &self.scanner,
            rules: Rules::embedded(),
            rescan_after: hunter_tests::RESCAN_AFTER,
            send_backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
                max_retries: 1,
            },
            max_receives: None,
            referrals_queue: None,
        }
    }
}

#[tokio::test]
async fn a_rules_file_names_the_website_fields_extraction_reads() {
    let embedded = hunter_domain::rules::EMBEDDED_RULES_TOML;
    let start = embedded.find("website_fields = [").unwrap();
    let end = start + embedded[start..].find(']').unwrap() + 1;
    let path = std::env::temp_dir().join(format!("hunter-rules-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "{}website_fields = [\"crmHomepage\"]{}",
            &embedded[..start],
            &embedded[end..]
        ),
    )
    .unwrap();
    let rules = Rules::load(Some(&path));
    std::fs::remove_file(&path).unwrap();
    let rules = rules.unwrap();
    let deps = Deps::new();
    let ingest = IngestDeps {
        rules: &rules,
        ..deps.ingest()
    };
    let mut named = referral(1);
    named["customerProfile"] =
        json!({"name": "Northwind", "crmHomepage": "https://shop.northwind.co.uk/"});
    let mut unnamed = referral(2);
    unnamed["customerProfile"] = json!({"name": "Fabrikam", "website": "https://fabrikam.de"});

    let found = ingest_message(&ingest, &envelope(None, named))
        .await
        .unwrap();
    let missed = ingest_message(&ingest, &envelope(None, unnamed))
        .await
        .unwrap();

    assert_eq!(
        found.domain.map(|d| d.to_string()).as_deref(),
        Some("northwind.co.uk")
    );
    assert_eq!(found.skip_reason, None);
    assert_eq!(
        missed.skip_reason,
        Some(SkipReason::NoDomain),
        "a website field the rules file does not name is not read"
    );
}

#[tokio::test]
async fn a_referral_delivered_twice_and_out_of_order_keeps_the_newest_version() {
    let deps = Deps::new();
    let older = referral(1);
    let mut newer = referral(1);
    newer["updatedDateTime"] = json!("2026-11-03T10:00:00Z");
    newer["status"] = json!("Active");
    newer["substatus"] = json!("Accepted");

    let outcomes = [
        ingest_message(&deps.ingest(), &envelope(None, newer.clone()))
            .await
            .unwrap()
            .outcome,
        ingest_message(&deps.ingest(), &envelope(None, older))
            .await
            .unwrap()
            .outcome,
        ingest_message(&deps.ingest(), &envelope(None, newer))
            .await
            .unwrap()
            .outcome,
    ];

    assert_eq!(
        outcomes,
        [
            UpsertOutcome::Inserted,
            UpsertOutcome::Stale,
            UpsertOutcome::Unchanged
        ]
    );
    let stored = deps.store.get_referral("ref-0001").await.unwrap().unwrap();
    assert_eq!(stored.status.as_deref(), Some("Active"));
    let lead = deps
        .store
        .get_lead(&normalize_domain("company1.de").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.referral_count, 1, "a duplicate does not count twice");
    assert_eq!(
        lead.latest_status(),
        Some("Active"),
        "the stale version did not touch the lead"
    );
}

#[tokio::test]
async fn poison_input_is_stored_with_its_reason_and_acknowledged() {
    let deps = Deps::new();
    let huge = format!(
        "{{\"id\": \"big\", \"notes\": \"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let cases = [
        ("m1", "definitely not json".to_owned(), "not valid JSON"),
        ("m2", "[1, 2, 3]".to_owned(), "not a JSON object"),
        (
            "m3",
            envelope(Some("run-x"), json!({"name": "no id"})),
            "no id",
        ),
        ("m4", huge, "limit"),
        (
            "m5",
            "{\"id\": \"\\u0000 <script>alert(1)</script>\\u202e\", \"status\": 7}".to_owned(),
            "",
        ),
    ];
    let response = handle_batch(
        &deps.ingest(),
        event(
            &cases
                .iter()
                .map(|(id, b, _)| (*id, b.clone()))
                .collect::<Vec<_>>(),
        ),
    )
    .await;

    assert!(
        response.batch_item_failures.is_empty(),
        "poison is never retried: {:?}",
        response.batch_item_failures
    );
    let invalid = crate::support::invalid_referrals(&deps.store).await;
    assert_eq!(
        invalid.len(),
        4,
        "{:?}",
        invalid.iter().map(|r| &r.skip_detail).collect::<Vec<_>>()
    );
    for (_, body, why) in &cases[..4] {
        let record = invalid
            .iter()
            .find(|r| body.contains(&r.raw.replace("…[truncated]", "")))
            .unwrap();
        assert!(
            record.skip_detail.as_deref().unwrap().contains(why),
            "{:?} for {why}",
            record.skip_detail
        );
        assert!(record.raw.len() <= hunter_domain::model::INVALID_RAW_MAX_BYTES);
    }
    // Hostile but readable strings are data: stored as given, skipped for a real reason.
    let hostile = deps
        .store
        .get_referral("\u{0} <script>alert(1)</script>\u{202e}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hostile.skip_reason,
        Some(SkipReason::NotIncoming),
        "stored as data and skipped for a real reason"
    );
    assert_eq!(
        hostile.status.as_deref(),
        Some("7"),
        "a number where text belongs is kept as text"
    );
}

/// A store that refuses to store one referral id, with `error`, and to count the runs' referrals
/// `count_failures` times.
struct FlakyStore {
    inner: EmbeddedStore,
    failing_id: String,
    error: StoreError,
    count_failures: AtomicU32,
    /// Calls that counted referrals in their runs.
    count_calls: AtomicU32,
    /// Calls that stored a batch of referrals.
    upsert_batches: AtomicU32,
}

impl FlakyStore {
    fn refusing(failing_id: &str, error: StoreError) -> Self {
        Self {
            inner: EmbeddedStore::new(),
            failing_id: failing_id.to_owned(),
            error,
            count_failures: AtomicU32::new(0),
            count_calls: AtomicU32::new(0),
            upsert_batches: AtomicU32::new(0),
        }
    }

    fn count(&self) -> Result<(), StoreError> {
        self.count_calls.fetch_add(1, Ordering::SeqCst);
        match self
            .count_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) => Err(self.error.clone()),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl ReferralStore for FlakyStore {
    async fn upsert_referral(&self, record: &ReferralRecord) -> Result<UpsertOutcome, StoreError> {
        if record.id == self.failing_id {
            return Err(self.error.clone());
        }
        self.inner.upsert_referral(record).await
    }
    async fn upsert_referrals(
        &self,
        records: &[&ReferralRecord],
    ) -> Vec<Result<UpsertOutcome, StoreError>> {
        self.upsert_batches.fetch_add(1, Ordering::SeqCst);
        hunter_core::ports::upsert_each(self, records).await
    }
    async fn get_referral(&self, id: &str) -> Result<Option<ReferralRecord>, StoreError> {
        self.inner.get_referral(id).await
    }
    async fn list_referrals(
        &self,
        query: &ReferralQuery,
    ) -> Result<Page<ReferralRecord>, StoreError> {
        self.inner.list_referrals(query).await
    }
}

#[async_trait]
impl LeadStore for FlakyStore {
    async fn get_lead(&self, domain: &Domain) -> Result<Option<Lead>, StoreError> {
        self.inner.get_lead(domain).await
    }
    async fn put_lead(
        &self,
        lead: &Lead,
        expected_version: Option<u64>,
        contribution: Option<&LeadReferral>,
    ) -> Result<(), StoreError> {
        self.inner
            .put_lead(lead, expected_version, contribution)
            .await
    }
    async fn get_contribution(
        &self,
        domain: &Domain,
        referral_id: &str,
    ) -> Result<Option<LeadReferral>, StoreError> {
        self.inner.get_contribution(domain, referral_id).await
    }
    async fn list_contributions(
        &self,
        domain: &Domain,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<LeadReferral>, StoreError> {
        self.inner.list_contributions(domain, limit, cursor).await
    }
    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        self.inner.list_leads(query).await
    }
    async fn lead_stats(&self) -> Result<hunter_domain::stats::LeadStats, StoreError> {
        self.inner.lead_stats().await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.inner.append_audit(entry).await
    }
    async fn list_audit(
        &self,
        domain: &Domain,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.list_audit(domain, limit).await
    }
}

#[async_trait]
impl PayloadStore for FlakyStore {
    async fn put_payload(&self, key: &str, text: &str) -> Result<(), StoreError> {
        self.inner.put_payload(key, text).await
    }
    async fn get_payload(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_payload(key).await
    }
}

#[async_trait]
impl FailureStore for FlakyStore {
    async fn record_failure(&self, failure: &MessageFailure) -> Result<(), StoreError> {
        self.inner.record_failure(failure).await
    }
    async fn get_failure(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<Option<MessageFailure>, StoreError> {
        self.inner.get_failure(queue, message_id).await
    }
}

#[async_trait]
impl SyncStore for FlakyStore {
    async fn put_sync_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        self.inner.put_sync_run(run).await
    }
    async fn count_ingested(&self, count: RunCount<'_>) -> Result<bool, StoreError> {
        self.count()?;
        self.inner.count_ingested(count).await
    }
    async fn count_all_ingested(&self, counts: &[RunCount<'_>]) -> Result<Vec<bool>, StoreError> {
        self.count()?;
        self.inner.count_all_ingested(counts).await
    }
    async fn claim_run_summary(&self, run_id: &str) -> Result<bool, StoreError> {
        self.inner.claim_run_summary(run_id).await
    }
    async fn get_sync_run(&self, id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.inner.get_sync_run(id).await
    }
    async fn list_sync_runs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError> {
        self.inner.list_sync_runs(limit, cursor).await
    }
    async fn get_state(&self, key: &str) -> Result<Option<SyncState>, StoreError> {
        self.inner.get_state(key).await
    }
    async fn put_state(
        &self,
        state: &SyncState,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.inner.put_state(state, expected_version).await
    }
}

#[tokio::test]
async fn a_batch_of_good_poison_and_transiently_failing_messages_reports_only_the_transient_one() {
    let store = FlakyStore::refusing("ref-0002", StoreError::Unavailable("throttled".into()));
    let fixture = Deps::over(store);
    let (store, deps) = (&fixture.store, fixture.ingest());
    let batch = event(&[
        ("good", envelope(None, referral(1))),
        ("poison", "{\"id\": ".to_owned()),
        ("transient", envelope(None, referral(2))),
    ]);

    let response = handle_batch(&deps, batch).await;

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["transient"]);
    assert!(
        store
            .get_referral("ref-0001")
            .await
            .unwrap()
            .is_some_and(|r| r.eligible)
    );
    let poison = crate::support::invalid_referrals(store).await;
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0].raw, "{\"id\": ");
    assert!(store.get_referral("ref-0002").await.unwrap().is_none());
    let why = store.get_failure("referrals", "transient").await.unwrap();
    assert!(
        why.is_some_and(|f| f.error.contains("throttled") && f.receive_count == 1),
        "the failed message's reason is kept for its dead letter"
    );
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json,
        json!({"batchItemFailures": [{"itemIdentifier": "transient"}]})
    );
}

#[tokio::test]
async fn a_referral_the_store_refuses_is_retried_not_recorded_as_invalid_payload() {
    let store = FlakyStore::refusing(
        "ref-0002",
        StoreError::InvalidItem("Item size has exceeded the maximum allowed size".into()),
    );
    let fixture = Deps::over(store);
    let (store, deps) = (&fixture.store, fixture.ingest());
    let batch = event(&[
        ("good", envelope(None, referral(1))),
        ("refused", envelope(None, referral(2))),
    ]);

    let response = handle_batch(&deps, batch).await;

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["refused"], "redelivered, then dead-lettered");
    assert!(
        crate::support::invalid_referrals(store).await.is_empty(),
        "a real referral is not turned into invalid_payload"
    );
    assert!(store.get_referral("ref-0001").await.unwrap().is_some());
}

/// A batch's referrals are stored in one store call and counted in their runs in another; when
/// the count fails, the messages with a run come back (stored already), and their redelivery
/// counts each once.
#[tokio::test]
async fn a_batch_is_stored_and_counted_in_one_call_each_and_a_failed_count_fails_those_with_a_run()
{
    let store = FlakyStore::refusing("none", StoreError::Unavailable("throttled".into()));
    store.count_failures.store(1, Ordering::SeqCst);
    let mut run = SyncRun::start("run-1", chrono::Utc::now());
    run.fetched = 3;
    store.put_sync_run(&run).await.unwrap();
    let fixture = Deps::over(store);
    let (store, deps) = (&fixture.store, fixture.ingest());
    let batch = || {
        event(&[
            ("with-run", envelope(Some("run-1"), referral(1))),
            (
                "unreadable-with-run",
                envelope(Some("run-1"), json!("not an object")),
            ),
            ("without-run", envelope(None, referral(2))),
            ("also-with-run", envelope(Some("run-1"), referral(3))),
        ])
    };
    let failed = |response: &aws_lambda_events::event::sqs::SqsBatchResponse| -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    };

    let first = handle_batch(&deps, batch()).await;

    assert_eq!(
        failed(&first),
        ["with-run", "unreadable-with-run", "also-with-run"]
    );
    assert_eq!(
        store.count_calls.load(Ordering::SeqCst),
        1,
        "one call for the batch"
    );
    assert_eq!(store.upsert_batches.load(Ordering::SeqCst), 1);
    let uncounted = store.get_sync_run("run-1").await.unwrap().unwrap();
    assert_eq!(uncounted.stored, 0);
    assert!(
        store.get_referral("ref-0001").await.unwrap().is_some(),
        "stored before the count"
    );
    assert_eq!(crate::support::invalid_referrals(store).await.len(), 1);

    let again = handle_batch(&deps, batch()).await;

    assert_eq!(failed(&again), Vec::<String>::new());
    assert_eq!(
        store.count_calls.load(Ordering::SeqCst),
        2,
        "one call for the batch"
    );
    let counted = store.get_sync_run("run-1").await.unwrap().unwrap();
    assert_eq!((counted.stored, counted.eligible), (3, 2));
    assert_eq!(
        counted.skipped,
        std::collections::BTreeMap::from([("invalid_payload".to_owned(), 1)])
    );
    handle_batch(&deps, batch()).await;
    let redelivered = store.get_sync_run("run-1").await.unwrap().unwrap();
    assert_eq!(redelivered.stored, 3, "a redelivery is not counted again");
}

#[tokio::test]
async fn the_lambda_entry_handles_a_real_sqs_event() {
    let deps = Deps::new();
    let fixture: SqsEvent =
        serde_json::from_str(include_str!("../fixtures/events/sqs-referrals.json")).unwrap();
    let mut run = SyncRun::start("run-fixture", chrono::Utc::now());
    run.fetched = 1;
    deps.store.put_sync_run(&run).await.unwrap();

    let answer = ingest_referral::handle(
        &deps.ingest(),
        lambda_runtime::LambdaEvent::new(fixture, lambda_runtime::Context::default()),
    )
    .await
    .unwrap();

    assert!(answer.batch_item_failures.is_empty());
    let good = deps
        .store
        .get_referral("2f1c6b7e-3a55-4c1e-9a0b-1d2e3f405162")
        .await
        .unwrap()
        .unwrap();
    assert!(good.eligible, "{good:?}");
    assert_eq!(
        good.domain.as_ref().map(Domain::as_str),
        Some("contoso.com")
    );
    let bare = deps.store.get_referral("bare-1").await.unwrap().unwrap();
    assert_eq!(bare.skip_reason, Some(SkipReason::NoDomain), "{bare:?}");
    let invalid = crate::support::invalid_referrals(&deps.store).await;
    assert_eq!(invalid[0].raw, "{\"id\": \"truncated");
    let run = deps
        .store
        .get_sync_run("run-fixture")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.stored, run.eligible),
        (1, 1),
        "only the enveloped message belongs to the run"
    );
    assert!(
        run.summarized_at.is_none(),
        "fetching has not finished, so no summary yet"
    );
}

#[tokio::test]
async fn referrals_of_one_domain_make_one_lead_and_each_change_requests_a_push() {
    let deps = Deps::new();
    // Referrals 0 and 7 both name company0.de.
    for n in [0, 7] {
        let ingested = ingest_message(&deps.ingest(), &envelope(None, referral(n)))
            .await
            .unwrap();
        assert!(ingested.lead_changed && ingested.push_requested);
    }
    let again = ingest_message(&deps.ingest(), &envelope(None, referral(7)))
        .await
        .unwrap();
    assert!(!again.lead_changed);

    let lead = deps
        .store
        .get_lead(&normalize_domain("company0.de").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (lead.referral_count, lead.referral_ids.clone()),
        (2, vec!["ref-0007".to_owned(), "ref-0000".to_owned()]),
        "the newest first"
    );
    assert_eq!(lead.deal_values["EUR"], 2000.0);
    // Two referrals and one scan changed what the lead says.
    assert_eq!((lead.version, lead.content_version), (3, 3));
    assert_eq!(
        deps.scanner.scans_of(&lead.domain),
        1,
        "one scan per domain"
    );
    let pushes: Vec<PushMessage> = take_all(&deps.push)
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        pushes
            .iter()
            .filter(|p| p.domain == "company0.de")
            .map(|p| p.lead_version)
            .max(),
        Some(3)
    );
    assert!(pushes.len() >= 2);
}

#[tokio::test]
async fn an_eligible_referral_s_domain_is_scanned_and_scored_after_the_referral_is_stored() {
    let deps = Deps::new();
    let ingested = ingest_message(&deps.ingest(), &envelope(None, referral(1)))
        .await
        .unwrap();
    assert!(ingested.push_requested);
    let lead = deps
        .store
        .get_lead(&normalize_domain("company1.de").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.scan_state, ScanState::Ok);
    assert_eq!(lead.provider.as_deref(), Some("Google"));
    let score = lead.score.unwrap();
    assert_eq!(
        lead.score_breakdown.iter().map(|l| l.points).sum::<i32>(),
        i32::from(score)
    );
    assert!(lead.segment.is_some() && lead.priority_category.is_some());
    assert_eq!(
        lead.signals.as_ref().map(|s| s.dkim_selectors.clone()),
        Some(vec!["google".to_owned()])
    );
    let pushes = take_all(&deps.push).await;
    let newest: Vec<PushMessage> = pushes
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        newest.iter().map(|p| p.lead_version).max(),
        Some(lead.content_version),
        "the push carries the scored lead"
    );
}

#[tokio::test]
async fn a_first_scan_claimed_by_an_ingest_that_died_is_done_by_the_next_delivery_after_the_claim()
{
    let deps = Deps::new();
    let domain = normalize_domain("company1.de").unwrap();
    // Another ingest claimed the first scan a moment ago and never finished it (it was killed).
    let mut claimed = Lead::new(domain.clone(), hunter_domain::clock::now());
    claimed.scan_claimed_at = Some(hunter_domain::clock::now());
    deps.store.put_lead(&claimed, None, None).await.unwrap();

    let err = ingest_message(&deps.ingest(), &envelope(None, referral(1)))
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("in progress elsewhere"), "{err}");
    assert!(
        deps.store.get_referral("ref-0001").await.unwrap().is_some(),
        "the referral is stored all the same"
    );
    // Delivered again once the claim is over, it scans.
    let mut stale = deps.store.get_lead(&domain).await.unwrap().unwrap();
    let version = stale.version;
    stale.scan_claimed_at =
        Some(hunter_domain::clock::now() - hunter_domain::lead_scan::SCAN_CLAIM);
    deps.store
        .put_lead(&stale, Some(version), None)
        .await
        .unwrap();
    ingest_message(&deps.ingest(), &envelope(None, referral(1)))
        .await
        .unwrap();
    let lead = deps.store.get_lead(&domain).await.unwrap().unwrap();
    assert_eq!(lead.scan_state, ScanState::Ok);
    assert!(lead.score.is_some());
}

#[tokio::test]
async fn a_referral_whose_first_scan_is_under_way_elsewhere_is_put_off_not_failed() {
    let deps = Deps::new();
    let domain = normalize_domain("company1.de").unwrap();
    let mut claimed = Lead::new(domain.clone(), hunter_domain::clock::now());
    claimed.scan_claimed_at = Some(hunter_domain::clock::now());
    deps.store.put_lead(&claimed, None, None).await.unwrap();
    let own = EmbeddedQueue::new("referrals", Duration::from_secs(60), 5);
    let ingest = IngestDeps {
        referrals_queue: Some(&own),
        ..deps.ingest()
    };

    let response = handle_batch(&ingest, event(&[("m1", envelope(None, referral(1)))])).await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let depth = hunter_core::ports::Queue::depth(&own).await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight),
        (0, 1),
        "a copy waits out the claim, its receives untouched"
    );
    tokio::time::pause();
    tokio::time::advance(hunter_domain::lead_scan::SCAN_CLAIM.to_std().unwrap()).await;
    let copy = hunter_core::ports::Queue::receive(&own, 10, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(copy.len(), 1);
    assert_eq!(copy[0].receive_count, 1);
}

#[tokio::test]
async fn a_scan_that_times_out_leaves_the_referral_stored_and_the_lead_unscored() {
    let deps = Deps::new();
    let mut unknown = referral(1);
    unknown["customerProfile"]["team"][0]["email"] = json!("ada@never-answers.example.com");
    let ingested = ingest_message(&deps.ingest(), &envelope(None, unknown))
        .await
        .unwrap();
    assert_eq!(ingested.skip_reason, None);
    assert!(deps.store.get_referral("ref-0001").await.unwrap().is_some());
    let lead = deps
        .store
        .get_lead(&normalize_domain("example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.scan_state, ScanState::Timeout);
    assert_eq!((lead.score, lead.provider.as_deref()), (None, None));
    assert!(lead.scan_detail.is_some());
}

#[tokio::test]
async fn a_stale_scan_is_done_again_and_a_changed_provider_asks_for_a_push() {
    let store = EmbeddedStore::new();
    let push = EmbeddedQueue::new("push", Duration::from_secs(60), 5);
    let domain = normalize_domain("company1.de").unwrap();
    let scan_as = |mx: &str| {
        let answers = DnsAnswers {
            mx: vec![MxRecord {
                preference: 10,
                host: mx.to_owned(),
            }],
            ..DnsAnswers::default()
        };
        StaticScanner::new(
            HashMap::from([(domain.clone(), answers)]),
            Otherwise::State(ScanState::Timeout),
        )
    };
    let google = scan_as("aspmx.l.google.com");
    let m365 = scan_as("company1-de.mail.protection.outlook.com");
    let turns = DomainTurns::default();
    let deps = |scanner, rescan_after| IngestDeps {
        turns: &turns,
        store: &store,
        push_queue: &push,
        scanner,
        rules: Rules::embedded(),
        rescan_after,
        send_backoff: Backoff::default(),
        max_receives: None,
        referrals_queue: None,
    };
    let week = Duration::from_secs(7 * 86_400);
    ingest_message(&deps(&google, week), &envelope(None, referral(1)))
        .await
        .unwrap();
    take_all(&push).await;
    // A redelivery within the week: no scan.
    ingest_message(&deps(&m365, week), &envelope(None, referral(1)))
        .await
        .unwrap();
    assert_eq!(m365.scans_of(&domain), 0);
    // Once the scan is older than HUNTER_RESCAN_AFTER, the domain is scanned again.
    ingest_message(&deps(&m365, Duration::ZERO), &envelope(None, referral(1)))
        .await
        .unwrap();
    assert_eq!(m365.scans_of(&domain), 1);
    let lead = store.get_lead(&domain).await.unwrap().unwrap();
    assert_eq!(lead.provider.as_deref(), Some("M365"));
    let providers: Vec<&str> = lead.history.iter().map(|h| h.provider.as_str()).collect();
    assert_eq!(providers, ["Google", "M365"]);
    let pushes: Vec<PushMessage> = take_all(&push)
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    assert_eq!(
        pushes.iter().map(|p| p.lead_version).max(),
        Some(lead.content_version),
        "the changed provider is pushed"
    );
}

#[tokio::test]
async fn a_whole_sync_is_accounted_for_and_summarized_once() {
    let mut set = referrals(30);
    set[3]["direction"] = json!("Outgoing");
    set.push(json!({"name": "no id at all", "updatedDateTime": "2026-11-01T07:00:00Z"}));
    let f = SyncFixture::start(
        set,
        hunter_local::sim::partner_center::SimConfig {
            page_size: 7,
            ..Default::default()
        },
    )
    .await;

    let summary = f.fetch().await;
    let messages = f.queued().await;
    let response = handle_batch(&f.ingest_deps(), hunter_local::worker::sqs_event(&messages)).await;
    assert!(response.batch_item_failures.is_empty());

    let run = f.sync_run(&summary.run_id).await;
    assert_eq!(run.fetched, summary.fetched);
    assert_eq!(run.stored, run.fetched, "{run:?}");
    assert_eq!(run.eligible + run.skipped.values().sum::<u32>(), run.stored);
    assert_eq!(run.skipped.get("not_incoming"), Some(&1));
    assert_eq!(run.skipped.get("invalid_payload"), Some(&1));
    assert!(
        run.summarized_at.is_some(),
        "the last ingest reported the summary"
    );
}

/// Two batches with a referral of the same new domain (`company0.de`: referrals 0 and 7),
/// handled at once by one process or (`separate`) by two, with a 1 s scan.
async fn two_batches_of_one_new_domain_at_once(separate: bool) -> (Deps, EmbeddedQueue, u64) {
    let deps = Deps::new();
    let scanner = OverlapScanner::new(Duration::from_secs(1));
    let own = EmbeddedQueue::new("referrals", Duration::from_secs(60), 5);
    let other_process = DomainTurns::default();
    let first = IngestDeps {
        scanner: &scanner,
        referrals_queue: Some(&own),
        ..deps.ingest()
    };
    let second = IngestDeps {
        turns: if separate {
            &other_process
        } else {
            first.turns
        },
        ..first
    };
    let (a, b) = tokio::join!(
        handle_batch(
            &first,
            event(&[("m0", envelope(Some("run-1"), referral(0)))])
        ),
        handle_batch(
            &second,
            event(&[("m7", envelope(Some("run-1"), referral(7)))])
        ),
    );
    assert!(a.batch_item_failures.is_empty(), "{a:?}");
    assert!(b.batch_item_failures.is_empty(), "{b:?}");
    let depth = hunter_core::ports::Queue::depth(&own).await.unwrap();
    (deps, own, depth.visible + depth.in_flight)
}

#[tokio::test(start_paused = true)]
async fn batches_handled_at_once_by_one_process_take_turns_on_a_new_domain() {
    let (deps, _, put_off) = two_batches_of_one_new_domain_at_once(false).await;
    assert_eq!(
        put_off, 0,
        "the second waited for the first's scan, nothing put off"
    );
    let lead = deps
        .store
        .get_lead(&normalize_domain("company0.de").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.referral_count, 2);
    assert_eq!(lead.scan_state, ScanState::Ok);
    assert!(deps.ingest().turns.is_empty(), "every turn given back");
}

#[tokio::test(start_paused = true)]
async fn batches_of_two_processes_put_off_a_referral_whose_domain_the_other_scans() {
    let (_, _, put_off) = two_batches_of_one_new_domain_at_once(true).await;
    assert_eq!(
        put_off, 1,
        "the store's scan claim decides across processes"
    );
}

/// Counts the scans in flight at once (each takes `delay`), and scans as `inner` does.
struct OverlapScanner {
    inner: StaticScanner,
    delay: Duration,
    in_flight: std::sync::atomic::AtomicUsize,
    most_at_once: std::sync::atomic::AtomicUsize,
}

impl OverlapScanner {
    fn new(delay: Duration) -> Self {
        Self {
            inner: hunter_tests::scanner(),
            delay,
            in_flight: 0.into(),
            most_at_once: 0.into(),
        }
    }
}

#[async_trait]
impl hunter_core::ports::DomainScanner for OverlapScanner {
    async fn scan(&self, domain: &Domain) -> hunter_domain::scan::DomainScan {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_at_once.fetch_max(now, SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, SeqCst);
        self.inner.scan(domain).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_joins_each_domain_s_referrals_in_turn_while_other_domains_scan_alongside() {
    let deps = Deps::new();
    let scanner = OverlapScanner::new(Duration::from_secs(1));
    let ingest = IngestDeps {
        scanner: &scanner,
        ..deps.ingest()
    };
    // Referrals 0..10: seven domains (company0.de..company6.de), 0/7, 1/8 and 2/9 share one.
    let bodies: Vec<(String, String)> = (0..10)
        .map(|n| (format!("m{n}"), envelope(Some("run-1"), referral(n))))
        .collect();
    let records: Vec<(&str, String)> = bodies
        .iter()
        .map(|(id, b)| (id.as_str(), b.clone()))
        .collect();
    let started = tokio::time::Instant::now();
    let response = handle_batch(&ingest, event(&records)).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "nothing put off or failed"
    );
    let most = scanner
        .most_at_once
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 7, "the seven domains scanned side by side");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the scans overlapped (paused clock: {:?})",
        started.elapsed()
    );
    for n in 0..7 {
        let domain = normalize_domain(&format!("company{n}.de")).unwrap();
        let lead = deps.store.get_lead(&domain).await.unwrap().unwrap();
        let want = if n < 3 { 2 } else { 1 };
        assert_eq!(lead.referral_count, want, "{domain}");
        assert_eq!(lead.scan_state, ScanState::Ok, "{domain}");
        assert_eq!(scanner.inner.scans_of(&domain), 1, "{domain} scanned once");
    }
}
