//! The five Lambda binaries, unchanged, under `cargo lambda watch` (its emulation of the Lambda
//! runtime and invoke APIs) against DynamoDB and SQS in moto server and the Partner Center and
//! Dataverse simulators, driven with AWS's own event shapes: an EventBridge schedule for
//! fetch-referrals and pull-dynamics, SQS batches of the queues' real messages for
//! ingest-referral and push-dynamics, and HTTP requests through the function URL of http-api (payload 2.0).
//!
//! This exercises what the in-process suites cannot: each `main.rs` composition root reading its
//! environment, building its adapters and serving the runtime API. Needs `cargo-lambda`
//! (`make test` installs it into `.venv/`) and moto (`scripts/with-moto.sh`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use hunter_core::adapters::{DynamoStore, SecretsManagerRefreshTokenStore, SqsQueue};
use hunter_core::partner_center::RefreshTokenStore as _;
use hunter_core::ports::{ReferralQuery, ReferralStore, SyncStore};
use hunter_local::dns::DnsSim;
use hunter_local::sim::dataverse::{DataverseConfig, DataverseSim};
use hunter_local::sim::partner_center::{PartnerCenterSim, SimConfig};
use hunter_local::sim::seed::generate_referrals;
use hunter_tests::{moto_sdk_config, moto_session, moto_url};
use serde_json::{Value, json};

const REFERRALS: usize = 24;
const API_TOKEN: &str = "watch-test-token";

/// The function binaries cargo lambda watch runs (`cargo run --bin NAME`).
const FUNCTIONS: [&str; 5] = [
    "fetch-referrals",
    "ingest-referral",
    "push-dynamics",
    "pull-dynamics",
    "http-api",
];

/// `cargo lambda watch` in the workspace root, stopped (with its functions) on drop.
struct Watch {
    child: Mutex<Child>,
    url: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let pid = child.id().to_string();
        // Asked to stop, watch stops the function processes it started; wait for it, then make sure.
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn cargo_lambda() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/cargo-lambda");
    std::env::var("HUNTER_CARGO_LAMBDA")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| venv.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Builds the function binaries first, so that no request waits on a compiler.
fn build_functions() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.current_dir(WORKSPACE).args(["build", "--quiet"]);
    for function in FUNCTIONS {
        build.args(["--bin", function]);
    }
    assert!(
        build.status().unwrap().success(),
        "building the functions failed"
    );
}

impl Watch {
    fn start(port: u16, env: &[(&str, String)]) -> Self {
        build_functions();
        let log =
            std::fs::File::create(format!("{WORKSPACE}/target/cargo-lambda-watch.log")).unwrap();
        let child = Command::new(cargo_lambda())
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(WORKSPACE)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (make test installs cargo-lambda into .venv/)",
                    cargo_lambda()
                )
            });
        Self {
            child: Mutex::new(child),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn assert_running(&self) {
        if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
            panic!("cargo lambda watch exited ({status}); see target/cargo-lambda-watch.log");
        }
    }

    /// Sends a request (again while watch is not listening yet).
    async fn send<F, Fut>(&self, send: F) -> reqwest::Response
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running();
            match send().await {
                Ok(response) => return response,
                Err(err) if err.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => panic!(
                    "cargo lambda watch did not answer: {err} (see target/cargo-lambda-watch.log)"
                ),
            }
        }
    }

    /// Invokes `function` with `event` (RequestResponse).
    async fn invoke(&self, function: &str, event: &Value) -> Value {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.url);
        let response = self.send(|| http().post(&url).json(event).send()).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{function} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{function}: not JSON: {text}"))
    }

    /// `method path` on http-api's function URL.
    async fn api(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
        let url = format!("{}/lambda-url/http-api{path}", self.url);
        let response = self
            .send(|| {
                let request = http().request(method.clone(), &url);
                match token {
                    Some(token) => request.bearer_auth(token).send(),
                    None => request.send(),
                }
            })
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Binaries are built and start in well under a second; a request outliving this is stuck.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Receives what `queue` holds as one SQS event (as the event source mapping builds it) per
/// batch of up to 10, invokes `function` with it, and deletes what it did not report failed.
async fn drain_through(
    watch: &Watch,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    function: &str,
) -> usize {
    let arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queue_url.rsplit('/').next().unwrap()
    );
    let mut delivered = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return delivered;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let answer = watch.invoke(function, &json!({ "Records": records })).await;
        let failed: BTreeSet<&str> = answer["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("{function}: no batchItemFailures in {answer}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        assert!(failed.is_empty(), "{function} reported failures: {answer}");
        for m in &messages {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        delivered += messages.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_functions_run_under_cargo_lambda_watch_should_sync_push_and_serve_end_to_end() {
    let _moto = moto_session().await;
    let sdk = moto_sdk_config().await;

    let pc_config = SimConfig {
        page_size: 10,
        ..SimConfig::default()
    };
    let refresh_token = pc_config.initial_refresh_token.expose().to_owned();
    let referrals = generate_referrals(REFERRALS, 7);
    // ingest-referral scans the leads' domains on loopback, never the machine's resolver.
    let dns = DnsSim::seeded(&referrals, false)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let pc = PartnerCenterSim::new(referrals, pc_config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let dv_config = DataverseConfig::default();
    let (dv_client, dv_secret) = (
        dv_config.client_id.clone(),
        dv_config.client_secret.expose().to_owned(),
    );
    let dv = DataverseSim::new(dv_config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();

    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), "hunter-watch");
    store.ensure_table().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let visibility = Duration::from_secs(360);
    let referrals_queue = SqsQueue::ensure(sqs.clone(), "hunter-referrals", visibility, 5)
        .await
        .unwrap();
    let push_queue = SqsQueue::ensure(sqs.clone(), "hunter-dynamics-push", visibility, 5)
        .await
        .unwrap();

    // The rotating refresh token's secret, as template.yaml creates it: empty at first.
    let tokens = SecretsManagerRefreshTokenStore::ensure(&sdk, "hunter-watch-pc-refresh-token")
        .await
        .unwrap();

    let port = free_port();
    let watch = Watch::start(
        port,
        &[
            // http-api's sync trigger invokes fetch-referrals through the same watch server.
            (
                "AWS_ENDPOINT_URL_LAMBDA",
                format!("http://127.0.0.1:{port}"),
            ),
            ("AWS_ENDPOINT_URL", moto_url()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("HUNTER_TABLE", "hunter-watch".to_owned()),
            (
                "HUNTER_REFERRALS_QUEUE_URL",
                referrals_queue.url().to_owned(),
            ),
            ("HUNTER_DYNAMICS_QUEUE_URL", push_queue.url().to_owned()),
            ("HUNTER_PARTNER_CENTER_URL", pc.base_url.clone()),
            ("HUNTER_PARTNER_CENTER_TOKEN_URL", pc.token_url.clone()),
            ("HUNTER_DYNAMICS_URL", dv.base_url.clone()),
            ("HUNTER_DYNAMICS_TOKEN_URL", dv.token_url.clone()),
            ("HUNTER_DNS_SERVER", dns.addr.to_string()),
            ("HUNTER_PC_CLIENT_ID", "hunter-watch".to_owned()),
            ("HUNTER_PC_REFRESH_TOKEN", refresh_token),
            (
                "HUNTER_PC_REFRESH_TOKEN_SECRET_ARN",
                tokens.secret_id().to_owned(),
            ),
            ("HUNTER_D365_CLIENT_ID", dv_client),
            ("HUNTER_D365_CLIENT_SECRET", dv_secret),
            ("HUNTER_D365_TENANT", "watch-tenant".to_owned()),
            // Exactly the shared environment (docs/architecture.md): no HUNTER_FETCH_FUNCTION,
            // http-api invokes fetch-referrals by its name.
            ("HUNTER_API_TOKEN", API_TOKEN.to_owned()),
        ],
    );

    // fetch-referrals: the schedule's event, every page enqueued.
    let schedule: Value = serde_json::from_str(include_str!(
        "../fixtures/events/eventbridge-scheduled.json"
    ))
    .unwrap();
    // cargo lambda watch gives each invocation a short deadline, so the run pages until its
    // margin and stores a continuation; each next invocation resumes the same run.
    let mut fetched = watch.invoke("fetch-referrals", &schedule).await;
    let run_id = fetched["runId"].clone();
    let mut invocations = 1;
    loop {
        assert_eq!(fetched["enqueued"], fetched["fetched"], "{fetched}");
        assert_eq!(fetched["runId"], run_id, "a continuation keeps its run");
        if fetched["status"] != "continued" {
            break;
        }
        assert!(invocations < 10, "the run never finished: {fetched}");
        fetched = watch.invoke("fetch-referrals", &schedule).await;
        invocations += 1;
    }
    assert_eq!(fetched["status"], "succeeded", "{fetched}");
    assert_eq!(fetched["fetched"], REFERRALS, "run totals: {fetched}");
    assert!(fetched["pages"].as_u64().unwrap() >= 3, "{fetched}");
    // The rotated refresh token went to its own secret.
    assert_eq!(
        tokens.load().await.unwrap().unwrap().token.expose(),
        pc.sim.current_refresh_token()
    );

    // ingest-referral: the referrals queue's messages as SQS events.
    let ingested = drain_through(&watch, &sqs, referrals_queue.url(), "ingest-referral").await;
    assert_eq!(ingested, REFERRALS);
    let stored = store
        .list_referrals(&ReferralQuery {
            limit: Some(200),
            ..ReferralQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.items.len(), REFERRALS);
    let eligible_domains: BTreeSet<String> = stored
        .items
        .iter()
        .filter(|r| r.eligible)
        .filter_map(|r| r.domain.as_ref().map(ToString::to_string))
        .collect();
    assert!(
        !eligible_domains.is_empty(),
        "the seed has eligible referrals"
    );

    // push-dynamics: the push requests as SQS events; every eligible domain lands once.
    let pushed = drain_through(&watch, &sqs, push_queue.url(), "push-dynamics").await;
    assert!(pushed >= eligible_domains.len(), "{pushed} pushes");
    let keys: Vec<String> = dv
        .sim
        .records("leads")
        .iter()
        .map(|lead| lead["hnt_hunterkey"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys.iter().cloned().collect::<BTreeSet<_>>(),
        eligible_domains,
        "one Dynamics lead per eligible domain"
    );
    assert_eq!(keys.len(), eligible_domains.len(), "no duplicates");
    assert!(
        dv.sim
            .records("leads")
            .iter()
            .all(|lead| lead["hnt_finalscore"].is_number()),
        "ingest-referral scanned and scored every lead over DNS before the push"
    );

    // pull-dynamics: a seller qualifies one lead and takes it over; the scheduled pull brings it
    // back onto Hunter's lead, and the next pull (nothing changed) finds nothing new.
    let qualified = eligible_domains.iter().next().unwrap().clone();
    dv.sim
        .seller_update(
            "leads",
            "hnt_hunterkey",
            &qualified,
            json!({"statecode": 1, "statuscode": 3,
                   "ownerid@odata.bind": "/systemusers(00000000-0000-0000-0000-00000000a001)"}),
        )
        .unwrap();
    let pulled = watch.invoke("pull-dynamics", &schedule).await;
    assert_eq!(pulled["fullRead"], true, "{pulled}");
    assert_eq!(pulled["changes"], eligible_domains.len(), "{pulled}");
    assert_eq!(pulled["leadsUpdated"], eligible_domains.len(), "{pulled}");
    let again = watch.invoke("pull-dynamics", &schedule).await;
    assert_eq!(
        (again["fullRead"].clone(), again["changes"].clone()),
        (json!(false), json!(0)),
        "{again}"
    );

    // http-api through its function URL (payload 2.0).
    let (status, health) = watch
        .api(reqwest::Method::GET, "/api/v1/health", None)
        .await;
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));
    let (status, _) = watch
        .api(reqwest::Method::GET, "/api/v1/referrals", None)
        .await;
    assert_eq!(status, 401);
    let (status, listed) = watch
        .api(
            reqwest::Method::GET,
            "/api/v1/referrals?eligible=true&limit=100",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        stored.items.iter().filter(|r| r.eligible).count()
    );
    let (status, leads) = watch
        .api(
            reqwest::Method::GET,
            "/api/v1/leads?limit=100",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{leads}");
    let leads = leads["items"].as_array().unwrap();
    assert_eq!(leads.len(), eligible_domains.len());
    let seller_lead = leads
        .iter()
        .find(|l| l["domain"] == qualified.as_str())
        .unwrap();
    assert_eq!(
        (&seller_lead["crmStatus"], &seller_lead["crmOwner"]),
        (&json!("Qualified"), &json!("Avery Seller")),
        "{seller_lead}"
    );
    assert!(
        leads
            .iter()
            .all(|l| l["score"].is_number() && l["scanState"] != "pending"),
        "{leads:?}"
    );
    let (status, runs) = watch
        .api(reqwest::Method::GET, "/api/v1/sync-runs", Some(API_TOKEN))
        .await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["items"][0]["id"], run_id, "{runs}");

    let before = store
        .list_sync_runs(Some(50), None)
        .await
        .unwrap()
        .items
        .len();
    let (status, accepted) = watch
        .api(reqwest::Method::POST, "/api/v1/sync", Some(API_TOKEN))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["inProgress"], false,
        "the last run finished: {accepted}"
    );
    let run_id = accepted["runId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = store.list_sync_runs(Some(50), None).await.unwrap().items;
        if runs.iter().any(|r| r.id == run_id) {
            assert_eq!(runs.len(), before + 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "POST /sync did not start fetch-referrals run {run_id}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
