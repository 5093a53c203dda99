//! `hunter-local --once` as a user runs it: the binary, its summary JSON and its exit status,
//! on the embedded adapters and on DynamoDB/SQS (moto server).

#![allow(clippy::unwrap_used)]

use hunter_local::dns::DnsSim;
use hunter_local::sim::control::SimControl as _;
use std::process::Command;

use serde_json::Value;

fn run(args: &[&str], env: &[(&str, String)]) -> (Value, std::process::ExitStatus) {
    let (summary, status, _) = run_with_logs(args, env, "warn");
    (summary, status)
}

/// The summary, exit status and log lines (stderr) of `hunter-local ARGS` at `log_level`.
fn run_with_logs(
    args: &[&str],
    env: &[(&str, String)],
    log_level: &str,
) -> (Value, std::process::ExitStatus, String) {
    // Throwaway runs keep nothing, unless a test names a backend.
    let throwaway = !args
        .iter()
        .any(|a| matches!(*a, "--aws" | "--data-dir" | "--in-memory"));
    let output = Command::new(env!("CARGO_BIN_EXE_hunter-local"))
        .args(args)
        .args(throwaway.then_some("--in-memory"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", log_level)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON summary ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        summary,
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_accounted_for(summary: &Value, expected: u64) {
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} missing: {summary}"))
    };
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(count("fetched"), expected, "{summary}");
    assert_eq!(
        count("stored"),
        count("fetched"),
        "every fetched referral is stored: {summary}"
    );
    let skipped: u64 = summary["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(count("eligible") + skipped, count("stored"), "{summary}");
    assert!(
        count("eligible") > 0 && skipped > 0,
        "a realistic mix: {summary}"
    );
    assert!(
        count("leadsUpserted") > 0 && count("leadsUpserted") <= count("eligible"),
        "{summary}"
    );
    assert_eq!(count("dlq"), 0);
    for key in ["dynamicsPushed", "dynamicsFailed", "durationMs"] {
        assert!(summary[key].is_u64(), "{key}: {summary}");
    }
}

#[test]
fn once_with_500_seeded_referrals_accounts_for_every_one_on_the_embedded_adapters() {
    let (summary, status) = run(&["--once", "--seed", "500"], &[]);
    assert!(status.success(), "{summary}");
    assert_accounted_for(&summary, 500);
    // Every lead was scanned over DNS (the built-in server) and scored.
    let leads = summary["leadsUpserted"].as_u64().unwrap();
    assert_eq!(summary["leadsScored"], leads, "{summary}");
    let states = summary["scanStates"].as_object().unwrap();
    assert!(
        states.keys().all(|s| ["ok", "no_mx"].contains(&s.as_str())),
        "no fault without --sim-dns-faults: {summary}"
    );
    let segments = summary["segments"].as_object().unwrap();
    for segment in ["Existing", "Migration", "Cold", "Skip"] {
        assert!(
            segments[segment].as_u64().unwrap() > 0,
            "{segment}: {summary}"
        );
    }
    let per_segment: u64 = segments.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(per_segment, leads);
}

#[test]
fn once_with_dns_faults_records_them_on_the_leads_and_still_pushes_every_lead() {
    let (summary, status) = run(&["--once", "--seed", "200", "--sim-dns-faults"], &[]);
    assert!(status.success(), "{summary}");
    let states = summary["scanStates"].as_object().unwrap();
    for state in ["nxdomain", "servfail", "timeout"] {
        assert!(states.contains_key(state), "{state}: {summary}");
    }
    assert_eq!(
        summary["dynamicsPushed"], summary["leadsUpserted"],
        "{summary}"
    );
    assert!(summary["leadsScored"].as_u64().unwrap() < summary["leadsUpserted"].as_u64().unwrap());
}

#[test]
fn once_with_credentials_in_the_environment_uses_them_against_the_built_in_simulators() {
    let env = [
        ("HUNTER_PC_CLIENT_ID", "my-app".to_owned()),
        ("HUNTER_PC_CLIENT_SECRET", "my-pc-secret".to_owned()),
        ("HUNTER_PC_REFRESH_TOKEN", "my-refresh-token".to_owned()),
        ("HUNTER_D365_CLIENT_ID", "my-dataverse-app".to_owned()),
        (
            "HUNTER_D365_CLIENT_SECRET",
            "my-dataverse-secret".to_owned(),
        ),
        ("HUNTER_D365_TENANT", "my-tenant".to_owned()),
    ];
    let (summary, status, logs) = run_with_logs(&["--once", "--seed", "60"], &env, "info");
    assert!(status.success(), "{summary}");
    assert_accounted_for(&summary, 60);
    assert!(
        summary["dynamicsPushed"].as_u64().unwrap() > 0,
        "the Dataverse simulator took the configured client: {summary}"
    );
    for secret in ["my-pc-secret", "my-refresh-token", "my-dataverse-secret"] {
        assert!(!logs.contains(secret), "{secret} reached a log line");
    }
}

#[test]
fn once_through_server_errors_throttling_and_expiring_tokens_still_accounts_for_every_referral() {
    let args = [
        "--once",
        "--seed",
        "150",
        "--sim-page-size",
        "10",
        "--sim-error-rate",
        "0.2",
        "--sim-throttle-rate",
        "0.2",
        "--sim-retry-after",
        "0",
        "--sim-expire-token-after-pages",
        "3",
        "--sim-dataverse-max-requests",
        "10",
        "--sim-dataverse-window",
        "1",
    ];
    // Paced for a limit far above the simulator's, so Dataverse throttles it too (paced for the
    // simulator's own, as by default, it stays below).
    let env = [("HUNTER_D365_REQUEST_LIMIT", "1000/1s".to_owned())];
    let (summary, status, logs) = run_with_logs(&args, &env, "warn");
    assert!(status.success(), "{summary}");
    assert_accounted_for(&summary, 150);
    let failures = logs
        .lines()
        .filter(|l| l.contains("\"partner_center_request_failed\""))
        .collect::<Vec<_>>();
    assert!(
        failures.iter().any(|l| l.contains("\"status\":401")),
        "a token expired mid-run: {logs}"
    );
    assert!(
        failures.iter().any(|l| l.contains("\"status\":429")),
        "throttled: {logs}"
    );
    assert!(
        failures.iter().any(|l| l.contains("\"status\":50")),
        "server errors: {logs}"
    );
    assert!(
        !logs.contains("sim-refresh-token"),
        "no secret in a log line"
    );
    // Every failed request is logged with the id it was sent under and, when the service
    // answered, the service's own request-id.
    let refused: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["event"] == "partner_center_request_failed"
                || e["event"] == "dataverse_request_failed"
        })
        .collect();
    assert!(
        refused
            .iter()
            .any(|e| e["event"] == "dataverse_request_failed"),
        "Dataverse throttled too: {logs}"
    );
    for event in &refused {
        assert!(event["client_request_id"].is_string(), "{event}");
        if event["status"].is_u64() {
            assert!(event["request_id"].is_string(), "{event}");
        }
    }
    assert_eq!(summary["pages"], 15);
}

#[test]
fn when_a_sync_runs_should_log_each_page_each_referral_and_one_summary_as_json() {
    let (summary, status, logs) = run_with_logs(
        &["--once", "--seed", "120", "--sim-page-size", "25"],
        &[],
        "info",
    );
    assert!(status.success(), "{summary}");
    let events: Vec<Value> = logs
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    let named =
        |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
    assert_eq!(
        named("partner_center_referrals_fetched").len(),
        5,
        "120 in pages of 25"
    );
    let ingested = named("partner_center_referral_ingested");
    let skipped = named("partner_center_referral_skipped");
    assert_eq!(
        Value::from(ingested.len()),
        summary["eligible"],
        "{summary}"
    );
    for (reason, count) in summary["skipped"].as_object().unwrap() {
        let logged = skipped
            .iter()
            .filter(|e| e["reason"] == reason.as_str())
            .count();
        assert_eq!(Value::from(logged), *count, "{reason}");
    }
    assert!(
        ingested
            .iter()
            .chain(&skipped)
            .all(|e| e["run_id"] == summary["runId"])
    );

    let summaries = named("partner_center_sync_summary");
    assert_eq!(summaries.len(), 1, "one summary per run");
    let logged = summaries[0];
    assert_eq!(logged["run_id"], summary["runId"]);
    assert_eq!(logged["status"], "succeeded");
    for key in ["fetched", "stored", "eligible", "pages"] {
        assert_eq!(logged[key], summary[key], "{key}: {logged}");
    }
    let mut skipped_total = 0;
    for (reason, count) in summary["skipped"].as_object().unwrap() {
        assert_eq!(
            logged[format!("skipped_{reason}")],
            *count,
            "{reason}: {logged}"
        );
        skipped_total += count.as_u64().unwrap();
    }
    assert_eq!(logged["skipped"], skipped_total);
    assert_eq!(logged["inserted"], summary["outcomes"]["inserted"]);
}

#[test]
fn when_partner_center_refuses_the_refresh_token_should_fail_the_run_and_still_summarize_it() {
    let env = [
        ("HUNTER_PC_REFRESH_TOKEN", "revoked-by-an-admin".to_owned()),
        ("HUNTER_SIM_REFRESH_TOKEN_REVOKED", "true".to_owned()),
    ];
    let (summary, status, logs) = run_with_logs(&["--once", "--seed", "20"], &env, "info");
    assert!(!status.success(), "a failed sync exits non-zero: {summary}");
    assert_eq!(summary["status"], "failed", "{summary}");
    assert_eq!(summary["fetched"], 0);
    // The error names the way out: a new sign-in (GET /health shows `partnerCenter.signIn:
    // "required"` from it; see tests/sign_in.rs).
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(hunter_core::ports::is_sign_in_required(error), "{summary}");
    assert!(error.contains("hunter-local sign-in"), "{summary}");
    let summaries: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["event"] == "partner_center_sync_summary")
        .collect();
    assert_eq!(summaries.len(), 1, "a failed run is summarized too: {logs}");
    assert_eq!(summaries[0]["status"], "failed");
    assert!(summaries[0]["error"].is_string());
    assert!(
        !logs.contains("revoked-by-an-admin"),
        "no secret in a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_with_a_referrals_file_serves_exactly_that_file() {
    let dir = std::env::temp_dir().join(format!("hunter-once-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("referrals.json");
    let referrals = serde_json::json!([
        {"id": "a", "status": "New", "substatus": "Pending", "direction": "Incoming", "updatedDateTime": "2026-11-01T08:00:00Z",
         "customerProfile": {"name": "Contoso", "team": [{"email": "ada@contoso.com"}]}},
        {"id": "b", "status": "Closed", "substatus": "Lost", "direction": "Incoming", "updatedDateTime": "2026-11-01T09:00:00Z",
         "customerProfile": {"team": [{"email": "bob@fabrikam.com"}]}},
        {"name": "no id"}
    ]);
    std::fs::write(&file, referrals.to_string()).unwrap();
    // With --referrals hunter-local scans through the system resolver unless --dns names one:
    // the test names a DNS server of its own on loopback.
    let dns = DnsSim::seeded(referrals.as_array().unwrap(), false)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let args = [
        "--once".to_owned(),
        "--referrals".to_owned(),
        file.to_str().unwrap().to_owned(),
        "--dns".to_owned(),
        dns.addr.to_string(),
    ];

    let (summary, status) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    })
    .await
    .unwrap();

    assert!(status.success(), "{summary}");
    assert_eq!(summary["fetched"], 3);
    assert_eq!(summary["stored"], 3);
    assert_eq!(summary["eligible"], 1);
    assert_eq!(summary["skipped"]["status_closed"], 1, "{summary}");
    assert_eq!(summary["skipped"]["invalid_payload"], 1, "{summary}");
    assert_eq!(
        summary["leadsScored"], 1,
        "contoso.com scanned at --dns: {summary}"
    );
    assert!(
        dns.sim.queries().iter().any(|q| q.name == "contoso.com"),
        "the scan asked the named server"
    );
}

#[test]
fn once_with_aws_accounts_for_every_referral_on_dynamodb_and_sqs() {
    let moto = std::env::var("HUNTER_MOTO_URL").expect(
        "HUNTER_MOTO_URL is not set: run `make test-moto` (scripts/with-moto.sh starts moto)",
    );
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let env = [
        ("AWS_ENDPOINT_URL", moto.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("HUNTER_TABLE", format!("hunter-{suffix}")),
        (
            "HUNTER_REFERRALS_QUEUE_URL",
            format!("{moto}/123456789012/referrals-{suffix}"),
        ),
        (
            "HUNTER_DYNAMICS_QUEUE_URL",
            format!("{moto}/123456789012/push-{suffix}"),
        ),
    ];
    let (summary, status) = run(&["--once", "--aws", "--seed", "500"], &env);
    assert!(status.success(), "{summary}");
    assert_accounted_for(&summary, 500);
}

/// Partner Center and Dataverse simulators this test runs, which hunter-local only knows by URL.
struct External {
    pc: hunter_local::sim::partner_center::RunningSim,
    dv: hunter_local::sim::dataverse::RunningDataverse,
    _dns: hunter_local::dns::RunningDns,
}

/// `hunter-local --once` against [`External`] services serving `referrals` generated referrals,
/// with `env` added; its summary and logs.
async fn run_against_external(
    referrals: usize,
    env: &[(&str, String)],
) -> (External, Value, String) {
    use hunter_local::sim::dataverse::{DataverseConfig, DataverseSim};
    use hunter_local::sim::partner_center::{PartnerCenterSim, SimConfig};
    use hunter_local::sim::seed::generate_referrals;

    let pc_config = SimConfig::default();
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    env.push(("HUNTER_PC_CLIENT_ID".into(), "external-test".into()));
    env.push((
        "HUNTER_PC_REFRESH_TOKEN".into(),
        pc_config.initial_refresh_token.expose().to_owned(),
    ));
    let generated = generate_referrals(referrals, 99);
    let dns = DnsSim::seeded(&generated, false)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let pc = PartnerCenterSim::new(generated, pc_config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let dv_config = DataverseConfig::default();
    env.push(("HUNTER_D365_CLIENT_ID".into(), dv_config.client_id.clone()));
    env.push((
        "HUNTER_D365_CLIENT_SECRET".into(),
        dv_config.client_secret.expose().to_owned(),
    ));
    let dv = DataverseSim::new(dv_config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let args: Vec<String> = vec![
        "--once".into(),
        "--partner-center-url".into(),
        pc.base_url.clone(),
        "--partner-center-token-url".into(),
        pc.token_url.clone(),
        "--dynamics-url".into(),
        dv.base_url.clone(),
        "--dynamics-token-url".into(),
        dv.token_url.clone(),
        "--dns".into(),
        dns.addr.to_string(),
    ];
    let (summary, status, logs) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        run_with_logs(&args, &env, "info")
    })
    .await
    .unwrap();
    assert!(status.success(), "{summary}");
    (External { pc, dv, _dns: dns }, summary, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_external_services_are_named_should_sync_from_and_push_to_them_not_the_simulators() {
    let (external, summary, logs) = run_against_external(30, &[]).await;

    assert_accounted_for(&summary, 30);
    assert!(
        external
            .pc
            .sim
            .requests()
            .iter()
            .any(|r| r.path.contains("/engagements/referrals")),
        "the referrals came from the named Partner Center"
    );
    let leads = external.dv.sim.records("leads");
    assert_eq!(
        Value::from(leads.len()),
        summary["dynamicsPushed"],
        "every pushed lead is in the named Dataverse: {summary}"
    );
    assert!(!leads.is_empty());
    assert!(
        !external.dv.sim.records("opportunities").is_empty(),
        "accepted referrals become opportunities by default"
    );
    for simulator in ["partner_center_sim_started", "dataverse_sim_started"] {
        assert!(!logs.contains(simulator), "no built-in {simulator}: {logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_mapping_file_renames_a_column_should_push_to_that_column() {
    let file = std::env::temp_dir().join(format!("hunter-mapping-{}.toml", std::process::id()));
    let mapping = include_str!("../../../shared/domain/rules/dynamics-mapping.toml").replacen(
        "name = \"companyname\"",
        "name = \"new_companylegalname\"",
        1,
    );
    std::fs::write(&file, mapping).unwrap();
    let env = [
        ("HUNTER_MAPPING_FILE", file.to_string_lossy().into_owned()),
        ("HUNTER_D365_OPPORTUNITIES", "false".to_owned()),
    ];

    let (external, summary, _) = run_against_external(30, &env).await;

    let leads = external.dv.sim.records("leads");
    assert!(!leads.is_empty(), "{summary}");
    for lead in &leads {
        assert!(lead["new_companylegalname"].is_string(), "{lead}");
        assert!(lead.get("companyname").is_none_or(Value::is_null), "{lead}");
    }
    assert!(
        external.dv.sim.records("opportunities").is_empty(),
        "HUNTER_D365_OPPORTUNITIES=false makes none"
    );
    assert!(
        external
            .pc
            .sim
            .requests()
            .iter()
            .all(|r| r.method != "PATCH"),
        "write-back is off by default"
    );
}

/// In memory and on SQLite, `--once` ingests while the fetch is still enqueueing (as Lambda's
/// event source does), then drains what is left: referrals were stored before the run finished
/// fetching, and every one is stored and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_ingests_while_the_fetch_runs_in_memory_and_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    for backend in [&["--in-memory"][..], &["--data-dir", data_dir]] {
        once_ingests_while_the_fetch_runs(backend).await;
    }
}

async fn once_ingests_while_the_fetch_runs(backend: &[&str]) {
    use clap::Parser as _;
    use hunter_core::ports::ReferralQuery;
    let args = [
        "hunter-local",
        "--once",
        "--no-dynamics",
        "--seed",
        "2000",
        "--sim-page-size",
        "20",
    ];
    let args = hunter_local::cli::Args::parse_from(args.iter().chain(backend));
    let stack = std::sync::Arc::new(hunter_local::stack::Stack::build(&args).await.unwrap());

    let summary = hunter_local::run_once(&stack).await.unwrap();

    let run = stack
        .store
        .get_sync_run(&summary.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.fetched, run.stored),
        (2000, 2000),
        "{backend:?}: {run:?}"
    );
    let fetched_at = run.finished_at.unwrap();
    let (mut stored, mut before_fetch_ended) = (0, 0);
    let mut query = ReferralQuery {
        limit: Some(100),
        ..ReferralQuery::default()
    };
    loop {
        let page = stack.store.list_referrals(&query).await.unwrap();
        stored += page.items.len();
        before_fetch_ended += page
            .items
            .iter()
            .filter(|r| r.synced_at < fetched_at)
            .count();
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(stored, 2000, "{backend:?}");
    assert!(
        before_fetch_ended > 0,
        "{backend:?}: no referral was ingested before the fetch ended"
    );
}

/// A queue whose receives fail, once `after` of them have passed, until `broken` is cleared;
/// everything else passes through to `inner`.
struct BrokenReceives {
    inner: std::sync::Arc<dyn hunter_core::ports::Queue>,
    after: usize,
    receives: std::sync::atomic::AtomicUsize,
    broken: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl hunter_core::ports::Queue for BrokenReceives {
    async fn send_batch(
        &self,
        messages: &[hunter_core::ports::OutgoingMessage],
    ) -> Result<Vec<hunter_core::ports::SendFailure>, hunter_core::ports::QueueError> {
        self.inner.send_batch(messages).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<std::time::Duration>,
        wait: std::time::Duration,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        use std::sync::atomic::Ordering;
        let received = self.receives.fetch_add(1, Ordering::Relaxed);
        if received >= self.after && self.broken.load(Ordering::Relaxed) {
            return Err(hunter_core::ports::QueueError::Unavailable(
                "receive refused by the test".to_owned(),
            ));
        }
        self.inner.receive(max, visibility, wait).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), hunter_core::ports::QueueError> {
        self.inner.delete(receipt).await
    }

    async fn delete_batch(
        &self,
        receipts: &[String],
    ) -> Result<(), hunter_core::ports::QueueError> {
        self.inner.delete_batch(receipts).await
    }

    async fn change_visibility(
        &self,
        receipt: &str,
        timeout: std::time::Duration,
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

/// When the referrals queue fails outright while ingest runs beside the fetch (SQLite), the
/// fetch still enqueues every referral, the run fails with the queue's error, and nothing is
/// lost: once the queue answers again, draining it stores and counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_failing_beside_the_fetch_fails_the_run_and_loses_nothing() {
    use clap::Parser as _;
    use hunter_core::ports::ReferralQuery;
    use std::sync::atomic::Ordering;
    let data = tempfile::tempdir().unwrap();
    let args = hunter_local::cli::Args::parse_from([
        "hunter-local",
        "--once",
        "--no-dynamics",
        "--seed",
        "600",
        "--sim-page-size",
        "20",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let mut stack = hunter_local::stack::Stack::build(&args).await.unwrap();
    assert!(stack.ingest_beside_fetch);
    let queue = std::sync::Arc::new(BrokenReceives {
        inner: stack.referrals_queue.clone(),
        after: 3,
        receives: std::sync::atomic::AtomicUsize::new(0),
        broken: std::sync::atomic::AtomicBool::new(true),
    });
    stack.referrals_queue = queue.clone();
    let stack = std::sync::Arc::new(stack);

    let error = hunter_local::run_once(&stack).await.unwrap_err();

    assert!(
        error.to_string().contains("receive refused by the test"),
        "{error:#}"
    );
    let runs = stack.store.list_sync_runs(Some(1), None).await.unwrap();
    let run = &runs.items[0];
    assert_eq!(run.fetched, 600, "the fetch went on to the end: {run:?}");
    assert!(run.stored < 600, "{run:?}");
    assert_eq!(stack.referrals_queue.depth().await.unwrap().dead_letters, 0);

    queue.broken.store(false, Ordering::Relaxed);
    hunter_local::worker::drain_referrals(&stack).await.unwrap();

    let run = stack.store.get_sync_run(&run.id).await.unwrap().unwrap();
    assert_eq!((run.fetched, run.stored), (600, 600), "{run:?}");
    let (mut stored, mut query) = (0, ReferralQuery::default());
    loop {
        let page = stack.store.list_referrals(&query).await.unwrap();
        stored += page.items.len();
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(stored, 600);
}
