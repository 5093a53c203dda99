//! fetch-referrals against the Partner Center simulator: paging, throttling, server errors,
//! token expiry, refused tokens, continuation and the watermark.

use hunter_local::sim::control::SimControl as _;
use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use fetch_referrals::{FetchStatus, SYNC_STATE_KEY};
use hunter_domain::model::RunStatus;
use hunter_local::sim::partner_center::{Faults, PartnerCenterSim, SimConfig};
use serde_json::json;
use tokio::time::Instant;

use crate::support::{SyncFixture, referral, referrals};

fn pages_of(size: usize) -> SimConfig {
    SimConfig {
        page_size: size,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn paging_follows_the_odd_next_link_across_five_pages_and_enqueues_each_referral_once() {
    let f = SyncFixture::start(referrals(23), pages_of(5)).await;

    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!(
        (summary.pages, summary.fetched, summary.enqueued),
        (5, 23, 23)
    );
    let ids: Vec<String> = f.queued_ids().await;
    assert_eq!(ids.len(), 23);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        23,
        "no referral enqueued twice"
    );
    let paths: Vec<String> = f
        .sim
        .sim
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/v1.0/engagements/referrals")),
        "{paths:?}"
    );
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("/v1.0/referrals"))
            .count(),
        4,
        "next pages via the nextLink shape: {paths:?}"
    );
    let run = f.sync_run(&summary.run_id).await;
    assert_eq!(
        (run.status, run.pages, run.fetched, run.enqueued),
        (RunStatus::Succeeded, 5, 23, 23)
    );
    assert_eq!(
        summary.watermark.unwrap().to_rfc3339(),
        "2026-11-01T08:22:00.123456700+00:00"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_the_sync_succeeds() {
    let f = SyncFixture::start(referrals(12), pages_of(5)).await;
    f.sim.sim.set_faults(Faults {
        fail_next: vec![429],
        retry_after_secs: 1,
        ..Faults::default()
    });

    let started = std::time::Instant::now();
    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!(summary.enqueued, 12);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let statuses = f.referral_statuses();
    assert_eq!(statuses.first(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn when_partner_center_is_too_slow_to_answer_should_retry_the_timed_out_request() {
    let mut f = SyncFixture::start(referrals(8), pages_of(5)).await;
    // The client gives up on a request after 1 s; the simulator's first answer takes 60 s, so
    // the first attempt always times out, and the others have time to spare on a loaded machine.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let config = hunter_core::config::Config {
        partner_center_url: f.sim.base_url.clone(),
        partner_center_token_url: f.sim.token_url.clone(),
        ..hunter_core::config::Config::from_vars(Vec::new()).unwrap()
    };
    let credentials = hunter_core::credentials::Credentials {
        pc_client_id: "hunter-tests".to_owned(),
        pc_refresh_token: SimConfig::default().initial_refresh_token,
        ..hunter_core::credentials::Credentials::default()
    };
    f.client =
        hunter_core::wiring::partner_center(impatient, &config, &credentials, f.tokens.clone())
            .unwrap();
    f.sim.sim.set_faults(Faults {
        slow_next_ms: vec![60_000],
        ..Faults::default()
    });

    let summary = f.fetch().await;

    assert!(
        f.sim.sim.faults().slow_next_ms.is_empty(),
        "the slow answer was started, and timed out"
    );
    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!((summary.pages, summary.enqueued), (2, 8));
    assert_eq!(f.queued_ids().await.len(), 8);
}

#[tokio::test]
async fn a_503_then_success_is_retried() {
    let f = SyncFixture::start(referrals(8), pages_of(5)).await;
    f.sim.sim.set_faults(Faults {
        fail_next: vec![503, 500],
        ..Faults::default()
    });

    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!((summary.pages, summary.enqueued), (2, 8));
    assert_eq!(f.queued_ids().await.len(), 8);
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_renewed_once_and_paging_goes_on() {
    let f = SyncFixture::start(
        referrals(20),
        SimConfig {
            faults: Faults {
                expire_token_after_pages: Some(2),
                ..Faults::default()
            },
            ..pages_of(5)
        },
    )
    .await;
    let first_refresh_token = f.sim.sim.current_refresh_token();

    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!((summary.pages, summary.enqueued), (4, 20));
    assert_eq!(
        f.queued_ids().await.len(),
        20,
        "the page refused with 401 was not enqueued twice"
    );
    let statuses = f.referral_statuses();
    assert!(statuses.contains(&401), "{statuses:?}");
    // The rotated refresh token is the one kept for the next run.
    let rotated = f.sim.sim.current_refresh_token();
    assert_ne!(rotated, first_refresh_token);
    use hunter_core::partner_center::RefreshTokenStore as _;
    let stored = f.tokens.load().await.unwrap().unwrap();
    assert_eq!(stored.token.expose(), rotated);
    assert!(
        f.store()
            .get_state("partner_center_refresh_token")
            .await
            .unwrap()
            .is_none(),
        "the refresh token is not in the sync state every function reads"
    );
}

/// Neither watermark nor continuation is stored: the next run starts over from the old
/// watermark.
async fn assert_next_run_starts_over(f: &SyncFixture) {
    let state = f.store().get_state(SYNC_STATE_KEY).await.unwrap().unwrap();
    assert!(
        state.value["watermark"].is_null() && state.value["continuation"].is_null(),
        "the next run starts over: {state:?}"
    );
}

#[tokio::test]
async fn a_401_after_the_refresh_fails_the_run_with_a_typed_error_and_enqueues_nothing_twice() {
    let mut f = SyncFixture::start(referrals(15), pages_of(5)).await;
    f.settings.page_limit = 1;
    let first = f.fetch().await;
    assert_eq!((first.status, first.enqueued), (FetchStatus::Continued, 5));
    // From now on every request is refused, even with a freshly renewed token.
    f.sim.sim.set_faults(Faults {
        fail_next: vec![401, 401, 401, 401],
        ..Faults::default()
    });

    let failed = f.fetch().await;

    assert_eq!(failed.run_id, first.run_id);
    assert_eq!(failed.status, FetchStatus::Failed, "{failed:?}");
    assert_eq!(
        failed.retryable,
        Some(false),
        "auth failures need a person, not a retry loop"
    );
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("authentication"),
        "{failed:?}"
    );
    let run = f.sync_run(&failed.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.is_some());
    let refused = f
        .sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(
        refused, 2,
        "one renewal, then the typed error: no retry loop"
    );
    let ids = f.queued_ids().await;
    assert_eq!(ids.len(), 5, "only the first page was enqueued");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 5);
    assert_next_run_starts_over(&f).await;
}

#[tokio::test]
async fn a_page_limit_leaves_a_continuation_that_the_next_invocation_resumes() {
    let mut f = SyncFixture::start(referrals(17), pages_of(5)).await;
    f.settings.page_limit = 2;

    let first = f.fetch().await;
    assert_eq!(first.status, FetchStatus::Continued, "{first:?}");
    assert_eq!((first.pages, first.enqueued), (2, 10));
    let state = f.store().get_state(SYNC_STATE_KEY).await.unwrap().unwrap();
    assert!(
        state.value["continuation"]["nextLink"]
            .as_str()
            .unwrap()
            .contains("skiptoken"),
        "{state:?}"
    );
    assert!(
        state.value["watermark"].is_null(),
        "not advanced before the last page"
    );

    let second = f.fetch().await;
    assert_eq!(second.run_id, first.run_id, "the same run goes on");
    assert_eq!(second.status, FetchStatus::Succeeded, "{second:?}");
    assert_eq!((second.pages, second.fetched, second.enqueued), (4, 17, 17));
    let ids = f.queued_ids().await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 17);
    assert_eq!(ids.len(), 17);
}

#[tokio::test]
async fn a_near_deadline_stops_between_pages_and_saves_the_place() {
    let mut f = SyncFixture::start(referrals(12), pages_of(5)).await;
    f.settings.deadline_margin = Duration::from_secs(5);
    // The deadline is already inside the margin: one page, then the continuation.
    let summary = f
        .fetch_until(Some(Instant::now() + Duration::from_secs(3)))
        .await;
    assert_eq!(summary.status, FetchStatus::Continued, "{summary:?}");
    assert_eq!(summary.pages, 1);
    let resumed = f.fetch().await;
    assert_eq!(
        (resumed.status, resumed.enqueued),
        (FetchStatus::Succeeded, 12)
    );
}

#[tokio::test]
async fn the_next_run_asks_only_for_referrals_updated_since_the_watermark() {
    let mut f = SyncFixture::start(referrals(6), pages_of(5)).await;
    // Referrals are a minute apart: a two-minute look-back reaches back two of them.
    f.settings.sync_overlap = Duration::from_secs(120);
    let first = f.fetch().await;
    assert_eq!(first.enqueued, 6);
    f.queued().await;

    let mut changed = referral(3);
    changed["updatedDateTime"] = json!("2026-11-02T09:00:00Z");
    changed["status"] = json!("Active");
    f.sim.sim.upsert_referrals(vec![changed]);
    let second = f.fetch().await;

    assert_eq!(second.status, FetchStatus::Succeeded);
    let last_query = f
        .sim
        .sim
        .requests()
        .iter()
        .rev()
        .find(|r| r.path.starts_with("/v1.0/engagements"))
        .unwrap()
        .path
        .clone();
    assert!(last_query.contains("updatedDateTime"), "{last_query}");
    assert!(
        last_query.contains("08%3A03%3A00") || last_query.contains("08:03:00"),
        "the overlap before the 08:05 watermark: {last_query}"
    );
    let ids = f.queued_ids().await;
    // Those updated within the overlap before the watermark are fetched again (ge), and the
    // changed one.
    assert!(ids.contains(&"ref-0003".to_owned()), "{ids:?}");
    assert!(
        ids.iter()
            .all(|id| ["ref-0003", "ref-0004", "ref-0005"].contains(&id.as_str())),
        "{ids:?}"
    );
    assert_eq!(
        second.watermark.unwrap().to_rfc3339(),
        "2026-11-02T09:00:00+00:00"
    );
}

/// The messages on the referrals queue as the SQS event ingest-referral receives.
fn sqs_event(messages: &[hunter_core::ports::ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.body = Some(m.body.clone());
            record
        })
        .collect();
    event
}

#[tokio::test]
async fn a_referral_too_large_for_a_message_travels_by_reference_and_is_stored_whole() {
    // 300 KB: more than a queue message holds (256 KiB), less than the reader's 1 MiB bound.
    let mut big = referral(1);
    big["details"]["notes"] = json!("x".repeat(300 * 1024));
    let mut ineligible = referral(2);
    ineligible["details"]["notes"] = json!("y".repeat(300 * 1024));
    ineligible["direction"] = json!("Outgoing");
    // Above 1 MiB: still unreadable input, kept as an excerpt.
    let mut huge = referral(3);
    huge["details"]["notes"] = json!("z".repeat(1100 * 1024));
    let f = SyncFixture::start(
        vec![referral(0), big.clone(), ineligible.clone(), huge],
        pages_of(5),
    )
    .await;

    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_eq!(
        (summary.fetched, summary.enqueued, summary.recorded_invalid),
        (4, 3, 1)
    );
    let queued = f.queued().await;
    assert!(
        queued
            .iter()
            .all(|m| m.body.len() < 1024 || m.body.contains("ref-0000")),
        "the large ones travel as a reference"
    );
    let response = ingest_referral::handle_batch(&f.ingest_deps(), sqs_event(&queued)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );

    let stored = f.store().get_referral("ref-0001").await.unwrap().unwrap();
    assert!(stored.eligible, "{stored:?}");
    assert_eq!(stored.skip_reason, None);
    assert_eq!(stored.status.as_deref(), Some("New"));
    assert_eq!(
        stored.domain.as_ref().map(ToString::to_string).as_deref(),
        Some("company1.de")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored.raw).unwrap(),
        big,
        "the whole payload is kept"
    );
    let outgoing = f.store().get_referral("ref-0002").await.unwrap().unwrap();
    assert!(!outgoing.eligible);
    assert_eq!(
        outgoing.skip_reason,
        Some(hunter_domain::rules::SkipReason::NotIncoming)
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&outgoing.raw).unwrap(),
        ineligible
    );
    let invalid = crate::support::invalid_referrals(f.store()).await;
    assert_eq!(invalid.len(), 1, "only the one above 1 MiB");
    assert!(invalid[0].skip_detail.as_deref().unwrap().contains("bytes"));
    assert!(invalid[0].raw.len() <= hunter_domain::model::INVALID_RAW_MAX_BYTES);
    assert!(invalid[0].skip_detail.as_deref().unwrap().contains("limit"));
    let run = f.sync_run(&summary.run_id).await;
    assert_eq!(run.stored, 4, "{run:?}");
    assert_eq!(run.skipped.get("invalid_payload"), Some(&1));
}

#[tokio::test]
async fn a_referral_committed_late_with_an_older_update_time_is_fetched_by_the_next_run() {
    let f = SyncFixture::start(referrals(6), pages_of(5)).await;
    let first = f.fetch().await;
    assert_eq!(first.enqueued, 6);
    f.queued().await;
    let watermark = first.watermark.unwrap();

    // Committed after the first run, dated 5 minutes before its watermark.
    let mut late = referral(40);
    late["id"] = json!("late-1");
    late["updatedDateTime"] = json!((watermark - chrono::Duration::minutes(5)).to_rfc3339());
    f.sim.sim.upsert_referrals(vec![late]);
    let second = f.fetch().await;

    assert_eq!(second.status, FetchStatus::Succeeded, "{second:?}");
    let ids = f.queued_ids().await;
    assert!(ids.contains(&"late-1".to_owned()), "{ids:?}");
    assert_eq!(second.watermark, Some(watermark), "the watermark stays");
}

#[tokio::test]
async fn a_referral_dated_in_the_future_does_not_move_the_watermark_past_the_run_start() {
    let mut future = referral(10);
    future["updatedDateTime"] =
        json!((chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339());
    let f = SyncFixture::start(vec![referral(0), future], pages_of(5)).await;
    let first = f.fetch().await;
    assert_eq!((first.status, first.enqueued), (FetchStatus::Succeeded, 2));
    f.queued().await;
    let run = f.sync_run(&first.run_id).await;
    assert!(
        first.watermark.unwrap() <= run.started_at,
        "{:?} after {}",
        first.watermark,
        run.started_at
    );

    let mut after_first = referral(20);
    after_first["updatedDateTime"] = json!(chrono::Utc::now().to_rfc3339());
    f.sim.sim.upsert_referrals(vec![after_first]);
    let second = f.fetch().await;

    assert_eq!(second.status, FetchStatus::Succeeded, "{second:?}");
    let ids = f.queued_ids().await;
    assert!(ids.contains(&"ref-0020".to_owned()), "{ids:?}");
}

#[tokio::test]
async fn two_runs_at_once_on_one_store_fetch_once() {
    let f = SyncFixture::start(referrals(6), pages_of(5)).await;

    let (a, b) = tokio::join!(f.fetch(), f.fetch());

    let statuses = [
        serde_json::to_value(a.status).unwrap(),
        serde_json::to_value(b.status).unwrap(),
    ];
    let (ran, waited) = match statuses[0] == json!("succeeded") {
        true => (&a, &b),
        false => (&b, &a),
    };
    assert_eq!(ran.status, FetchStatus::Succeeded, "{a:?} {b:?}");
    assert_eq!(ran.enqueued, 6);
    assert_eq!(
        serde_json::to_value(waited).unwrap()["status"],
        json!("in_progress"),
        "{waited:?}"
    );
    assert_eq!(
        waited.run_id, ran.run_id,
        "names the run that holds the sync"
    );
    assert_eq!((waited.pages, waited.fetched, waited.enqueued), (0, 0, 0));
    assert_eq!(f.queued_ids().await.len(), 6, "fetched once");
    let runs = f.store().list_sync_runs(None, None).await.unwrap().items;
    assert_eq!(runs.len(), 1, "{runs:?}");
}

/// Marks the stored sync as held by `run_id` under a lease that ran out a minute ago (its
/// invocation was killed by the timeout before it could let go).
async fn expired_lease(f: &SyncFixture, run_id: &str) {
    let mut state = f
        .store()
        .get_state(SYNC_STATE_KEY)
        .await
        .unwrap()
        .unwrap_or(hunter_domain::model::SyncState {
            key: SYNC_STATE_KEY.to_owned(),
            value: json!({}),
            version: 0,
            updated_at: chrono::Utc::now(),
        });
    state.value["lease"] = json!({
        "runId": run_id,
        "holder": "a-killed-invocation",
        "expiresAt": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
    });
    let expected = (state.version > 0).then_some(state.version);
    state.version += 1;
    f.store().put_state(&state, expected).await.unwrap();
}

#[tokio::test]
async fn a_run_whose_lease_expired_is_abandoned_and_the_next_run_proceeds() {
    let f = SyncFixture::start(referrals(4), pages_of(5)).await;
    let stale = hunter_domain::model::SyncRun::start(
        "killed-run",
        chrono::Utc::now() - chrono::Duration::minutes(30),
    );
    f.store().put_sync_run(&stale).await.unwrap();
    expired_lease(&f, "killed-run").await;

    let summary = f.fetch().await;

    assert_eq!(summary.status, FetchStatus::Succeeded, "{summary:?}");
    assert_ne!(summary.run_id, "killed-run");
    assert_eq!(summary.enqueued, 4);
    let killed = f.sync_run("killed-run").await;
    assert_eq!(
        serde_json::to_value(killed.status).unwrap(),
        json!("abandoned"),
        "{killed:?}"
    );
    assert!(killed.finished_at.is_some());
}

#[tokio::test]
async fn a_continued_run_killed_mid_invocation_is_taken_over_from_its_continuation() {
    let mut f = SyncFixture::start(referrals(17), pages_of(5)).await;
    f.settings.page_limit = 2;
    let first = f.fetch().await;
    assert_eq!((first.status, first.enqueued), (FetchStatus::Continued, 10));
    // Its next invocation took the sync and was killed before it could let go.
    expired_lease(&f, &first.run_id).await;
    f.settings.page_limit = 500;

    let next = f.fetch().await;

    assert_eq!(next.status, FetchStatus::Succeeded, "{next:?}");
    assert_ne!(next.run_id, first.run_id, "a new run takes over");
    assert_eq!(
        (next.pages, next.enqueued),
        (2, 7),
        "from the stored place on"
    );
    let ids = f.queued_ids().await;
    assert_eq!(ids.len(), 17);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 17);
    let killed = f.sync_run(&first.run_id).await;
    assert_eq!(
        serde_json::to_value(killed.status).unwrap(),
        json!("abandoned")
    );
    assert_eq!(
        next.watermark.unwrap().to_rfc3339(),
        "2026-11-01T08:16:00.123456700+00:00",
        "the watermark covers the pages of both"
    );
}

#[tokio::test]
async fn the_lambda_entry_accepts_a_real_eventbridge_scheduled_event() {
    let f = SyncFixture::start(referrals(3), pages_of(5)).await;
    let payload: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/events/eventbridge-scheduled.json"
    ))
    .unwrap();
    let mut context = lambda_runtime::Context::default();
    context.request_id = "req-1".to_owned();
    context.deadline = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap() + 120_000;
    let deps = f.fetch_deps();

    let answer = fetch_referrals::handle(&deps, lambda_runtime::LambdaEvent::new(payload, context))
        .await
        .unwrap();

    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(
        (
            json["pages"].as_u64(),
            json["fetched"].as_u64(),
            json["enqueued"].as_u64()
        ),
        (Some(1), Some(3), Some(3))
    );
}

#[tokio::test]
async fn the_lambda_entry_answers_a_failed_run_with_a_typed_error() {
    let f = SyncFixture::start(referrals(3), pages_of(5)).await;
    f.sim.sim.set_faults(Faults {
        fail_next: vec![401, 401],
        ..Faults::default()
    });
    let deps = f.fetch_deps();

    let error = fetch_referrals::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(json!({}), lambda_runtime::Context::default()),
    )
    .await
    .unwrap_err();

    let failed = error
        .downcast_ref::<fetch_referrals::SyncFailed>()
        .expect("a SyncFailed");
    assert!(!failed.retryable);
    assert!(failed.message.contains("authentication"), "{failed:?}");
    assert!(f.queued_ids().await.is_empty());
}

/// The Lambda entry with a scheduled event, its metrics written to `sink`.
async fn invoke_with(
    f: &SyncFixture,
    sink: &hunter_core::metrics::MetricsSink,
) -> Result<fetch_referrals::FetchSummary, lambda_runtime::Error> {
    fetch_referrals::handle_with_metrics(
        &f.fetch_deps(),
        lambda_runtime::LambdaEvent::new(json!({}), lambda_runtime::Context::default()),
        sink,
    )
    .await
}

/// The metric values of an EMF line.
fn metric_values(line: &str) -> (u64, u64, u64, u64) {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["Function"], "fetch-referrals");
    let value = |name: &str| {
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    (
        value("Fetched"),
        value("Enqueued"),
        value("PagesFetched"),
        value("SyncRunsFailed"),
    )
}

#[tokio::test]
async fn each_invocation_writes_one_metrics_line_of_what_it_did() {
    let mut f = SyncFixture::start(referrals(8), pages_of(5)).await;
    f.settings.page_limit = 1;
    let sink = hunter_core::metrics::MetricsSink::memory();

    let first = invoke_with(&f, &sink).await.unwrap();
    let second = invoke_with(&f, &sink).await.unwrap();
    assert_eq!(
        (first.status, second.status),
        (FetchStatus::Continued, FetchStatus::Succeeded)
    );
    f.sim.sim.set_faults(Faults {
        fail_next: vec![401, 401],
        ..Faults::default()
    });
    invoke_with(&f, &sink).await.unwrap_err();

    let lines = sink.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(metric_values(&lines[0]), (5, 5, 1, 0));
    assert_eq!(
        metric_values(&lines[1]),
        (3, 3, 1, 0),
        "this invocation's share"
    );
    assert_eq!(metric_values(&lines[2]), (0, 0, 0, 1), "a failed run");
}

#[tokio::test]
async fn a_sync_held_by_another_invocation_answers_with_the_fields_of_a_summary() {
    let f = SyncFixture::start(referrals(3), pages_of(5)).await;
    let mut state = hunter_domain::model::SyncState {
        key: SYNC_STATE_KEY.to_owned(),
        value: json!({}),
        version: 1,
        updated_at: chrono::Utc::now(),
    };
    state.value["lease"] = json!({
        "runId": "busy-run",
        "holder": "another-invocation",
        "expiresAt": (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339(),
    });
    f.store().put_state(&state, None).await.unwrap();
    let deps = f.fetch_deps();

    let answer = fetch_referrals::handle(
        &deps,
        lambda_runtime::LambdaEvent::new(
            json!({"runId": "mine"}),
            lambda_runtime::Context::default(),
        ),
    )
    .await
    .unwrap();

    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(json["status"], "in_progress");
    assert_eq!(json["runId"], "busy-run");
    assert_eq!(
        (
            json["pages"].as_u64(),
            json["fetched"].as_u64(),
            json["enqueued"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(f.queued_ids().await.is_empty());
    assert!(
        f.sim.sim.requests().is_empty(),
        "Partner Center was not asked"
    );
}

/// The fixture's queue, failing every request as a whole once `up_for` batches went through.
/// With `watch`, its first send waits (up to 2 s) until the simulator has answered that many
/// page requests, and notes whether it saw them: a page read while the one before it is
/// being enqueued.
struct GoesDown<'a> {
    inner: &'a dyn hunter_core::ports::Queue,
    up_for: std::sync::Mutex<usize>,
    watch: Option<(&'a PartnerCenterSim, usize)>,
    read_ahead_seen: std::sync::Mutex<Option<bool>>,
}

impl<'a> GoesDown<'a> {
    fn after(inner: &'a dyn hunter_core::ports::Queue, batches: usize) -> Self {
        Self {
            inner,
            up_for: std::sync::Mutex::new(batches),
            watch: None,
            read_ahead_seen: std::sync::Mutex::new(None),
        }
    }

    fn page_requests(sim: &PartnerCenterSim) -> usize {
        sim.requests()
            .iter()
            .filter(|r| r.path.contains("referrals"))
            .count()
    }
}

#[async_trait::async_trait]
impl hunter_core::ports::Queue for GoesDown<'_> {
    async fn send_batch(
        &self,
        messages: &[hunter_core::ports::OutgoingMessage],
    ) -> Result<Vec<hunter_core::ports::SendFailure>, hunter_core::ports::QueueError> {
        let first = self.read_ahead_seen.lock().unwrap().is_none();
        if let (Some((sim, pages)), true) = (self.watch, first) {
            let waited = Instant::now();
            while Self::page_requests(sim) < pages && waited.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            *self.read_ahead_seen.lock().unwrap() = Some(Self::page_requests(sim) >= pages);
        }
        {
            let mut up_for = self.up_for.lock().unwrap();
            if *up_for == 0 {
                return Err(hunter_core::ports::QueueError::Unavailable(
                    "queue down".into(),
                ));
            }
            *up_for -= 1;
        }
        self.inner.send_batch(messages).await
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        self.inner.receive(max, visibility, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), hunter_core::ports::QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(
        &self,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), hunter_core::ports::QueueError> {
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn depth(
        &self,
    ) -> Result<hunter_core::ports::QueueDepth, hunter_core::ports::QueueError> {
        self.inner.depth().await
    }
    async fn peek_dead_letters(
        &self,
        max: usize,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        self.inner.peek_dead_letters(max).await
    }
    async fn take_dead_letters(
        &self,
        max: usize,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        self.inner.take_dead_letters(max).await
    }
    async fn redrive_dead_letters(&self) -> Result<usize, hunter_core::ports::QueueError> {
        self.inner.redrive_dead_letters().await
    }
}

/// One invocation of fetch-referrals on the fixture, sending to `queue`.
async fn fetch_through(
    f: &SyncFixture,
    queue: &dyn hunter_core::ports::Queue,
) -> fetch_referrals::FetchSummary {
    let deps = fetch_referrals::FetchDeps {
        queue,
        ..f.fetch_deps()
    };
    fetch_referrals::fetch_referrals(&deps, None, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn when_the_queue_fails_midway_through_a_page_should_fail_the_run_counting_what_went_out() {
    let f = SyncFixture::start(referrals(25), pages_of(25)).await;
    let down = GoesDown::after(f.queue.as_ref(), 2);

    let summary = fetch_through(&f, &down).await;

    assert_eq!(summary.status, FetchStatus::Failed, "{summary:?}");
    assert_eq!((summary.fetched, summary.enqueued), (25, 20), "{summary:?}");
    assert_eq!(f.queued_ids().await.len(), 20);
    let run = f.sync_run(&summary.run_id).await;
    assert_eq!((run.status, run.enqueued), (RunStatus::Failed, 20));
}

#[tokio::test]
async fn while_a_page_is_enqueued_the_next_one_is_already_read() {
    let f = SyncFixture::start(referrals(12), pages_of(5)).await;
    let watched = GoesDown {
        watch: Some((&f.sim.sim, 2)),
        ..GoesDown::after(f.queue.as_ref(), usize::MAX)
    };

    let summary = fetch_through(&f, &watched).await;

    assert_eq!(
        *watched.read_ahead_seen.lock().unwrap(),
        Some(true),
        "the second page was asked for while the first was being enqueued"
    );
    assert_eq!(
        (summary.status, summary.pages, summary.enqueued),
        (FetchStatus::Succeeded, 3, 12)
    );
    let ids = f.queued_ids().await;
    assert_eq!(
        (ids.len(), ids.iter().collect::<BTreeSet<_>>().len()),
        (12, 12)
    );
}

#[tokio::test]
async fn when_the_page_read_ahead_fails_the_page_before_it_is_enqueued_and_recorded_once() {
    let f = SyncFixture::start(referrals(15), pages_of(5)).await;
    // The first page is served; the second, read while the first is enqueued, is refused
    // (also after the token's renewal).
    f.sim.sim.set_faults(Faults {
        fail_next: vec![200, 401, 401, 401],
        ..Faults::default()
    });

    let failed = f.fetch().await;

    assert_eq!(failed.status, FetchStatus::Failed, "{failed:?}");
    assert_eq!(failed.retryable, Some(false), "{failed:?}");
    let run = f.sync_run(&failed.run_id).await;
    assert_eq!(
        (run.status, run.pages, run.fetched, run.enqueued),
        (RunStatus::Failed, 1, 5, 5),
        "the first page counted, the refused one not"
    );
    let ids = f.queued_ids().await;
    assert_eq!(
        (ids.len(), ids.iter().collect::<BTreeSet<_>>().len()),
        (5, 5)
    );
    assert_next_run_starts_over(&f).await;
}

#[tokio::test]
async fn when_the_queue_fails_on_a_later_page_the_page_read_ahead_is_dropped_uncounted() {
    let f = SyncFixture::start(referrals(25), pages_of(10)).await;
    // One batch of ten goes out: the first page. The second page's first batch is refused.
    let down = GoesDown::after(f.queue.as_ref(), 1);

    let summary = fetch_through(&f, &down).await;

    assert_eq!(summary.status, FetchStatus::Failed, "{summary:?}");
    assert_eq!(
        (summary.pages, summary.fetched, summary.enqueued),
        (2, 20, 10),
        "the third page, read while the second failed, is not counted: {summary:?}"
    );
    assert_eq!(f.queued_ids().await.len(), 10);
}

/// The fixture's Partner Center client, whose pages after the first never answer.
struct StallsAfterFirstPage<'a>(&'a dyn hunter_core::ports::ReferralSource);

#[async_trait::async_trait]
impl hunter_core::ports::ReferralSource for StallsAfterFirstPage<'_> {
    async fn first_page(
        &self,
        filter: &hunter_core::ports::ReferralFilter,
        deadline: Option<Instant>,
    ) -> Result<hunter_core::ports::ReferralPage, hunter_core::ports::SourceError> {
        self.0.first_page(filter, deadline).await
    }
    async fn next_page(
        &self,
        _next_link: &str,
        _deadline: Option<Instant>,
    ) -> Result<hunter_core::ports::ReferralPage, hunter_core::ports::SourceError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn when_the_queue_fails_the_run_ends_without_waiting_for_the_page_read_ahead() {
    let f = SyncFixture::start(referrals(15), pages_of(5)).await;
    let down = GoesDown::after(f.queue.as_ref(), 0);
    let stalls = StallsAfterFirstPage(&f.client);
    let deps = fetch_referrals::FetchDeps {
        queue: &down,
        source: &stalls,
        ..f.fetch_deps()
    };

    // Waiting for the page read ahead would never end: the limit only tells a hang apart.
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        fetch_referrals::fetch_referrals(&deps, None, None),
    )
    .await
    .expect("the failed enqueue ended the run")
    .unwrap();

    assert_eq!(summary.status, FetchStatus::Failed, "{summary:?}");
    assert_eq!((summary.pages, summary.enqueued), (1, 0), "{summary:?}");
    assert_next_run_starts_over(&f).await;
}
