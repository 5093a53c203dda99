//! The Dataverse Web API client of hunter-core against the Dataverse simulator over real HTTP.
#![allow(clippy::unwrap_used)]

use hunter_local::sim::control::SimControl as _;
use std::time::{Duration, Instant};

use hunter_core::dynamics::client::MAX_BATCH_ITEMS;
use hunter_core::dynamics::{DataverseAuth, DataverseClient, DataverseError, PacerSettings};
use hunter_core::http::TokenEndpoint;
use hunter_core::retry::Backoff;
use hunter_core::secret::Secret;
use hunter_local::sim::dataverse::{
    CODE_VALIDATION, DataverseConfig, DataverseSim, Faults, Limits, RunningDataverse,
};
use serde_json::{Map, Value, json};

const KEY: &str = "hnt_hunterkey";

async fn start() -> RunningDataverse {
    DataverseSim::new(DataverseConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn backoff(max_retries: u32) -> Backoff {
    Backoff {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
        max_retries,
    }
}

fn client_with(dv: &RunningDataverse, max_retries: u32) -> DataverseClient {
    let http = reqwest::Client::new();
    let endpoint = TokenEndpoint::new(
        http.clone(),
        &dv.token_url,
        "sim-client-id",
        Secret::new("sim-client-secret"),
    );
    let auth = DataverseAuth::new(endpoint, &dv.base_url);
    DataverseClient::new(http, &dv.base_url, auth, backoff(max_retries)).unwrap()
}

fn client(dv: &RunningDataverse) -> DataverseClient {
    client_with(dv, 5)
}

fn record(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn lead(subject: &str) -> Map<String, Value> {
    record(
        json!({"subject": subject, "companyname": "Contoso", "websiteurl": "https://contoso.com"}),
    )
}

/// Recorded API requests (token endpoint excluded) with this method.
fn api_requests(dv: &RunningDataverse, method: &str) -> Vec<u16> {
    dv.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.starts_with("/api/"))
        .map(|r| r.status)
        .collect()
}

fn token_requests(dv: &RunningDataverse) -> usize {
    dv.sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/oauth2/"))
        .count()
}

#[tokio::test]
async fn when_upserted_twice_should_create_then_update_the_same_record() {
    let dv = start().await;
    let client = client(&dv);
    let first = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("First"))
        .await
        .unwrap();
    assert!(first.created);
    let second = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Second"))
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    let records = dv.sim.records("leads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["leadid"], json!(first.id));
    assert_eq!(records[0]["subject"], json!("Second"));
    assert_eq!(records[0][KEY], json!("contoso.com"));
    assert_eq!(client.dop_hint(), Some(4));
    // One token for both calls.
    assert_eq!(token_requests(&dv), 1);
}

#[tokio::test]
async fn when_the_same_upsert_repeats_should_keep_one_record_even_with_quotes_in_the_key() {
    let dv = start().await;
    let client = client(&dv);
    let mut body = lead("O'Brien");
    // The key column in the body is dropped: the URL names it.
    body.insert(KEY.to_owned(), json!("o'brien.com"));
    let a = client
        .upsert_by_key("leads", KEY, "o'brien.com", &body)
        .await
        .unwrap();
    let b = client
        .upsert_by_key("leads", KEY, "o'brien.com", &body)
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    let records = dv.sim.records("leads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][KEY], json!("o'brien.com"));
}

#[tokio::test]
async fn when_throttled_should_wait_retry_after_then_succeed() {
    let dv = start().await;
    let client = client(&dv);
    dv.sim.set_faults(Faults {
        fail_next: vec![429],
        retry_after_secs: 1,
        ..Faults::default()
    });
    let started = Instant::now();
    let result = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Throttled"))
        .await
        .unwrap();
    assert!(result.created);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(api_requests(&dv, "PATCH"), vec![429, 201]);
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_a_503_storm_passes_should_succeed_with_one_record() {
    let dv = start().await;
    let client = client(&dv);
    dv.sim.set_faults(Faults {
        fail_next: vec![503, 503, 503],
        retry_after_secs: 0,
        ..Faults::default()
    });
    let result = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Storm"))
        .await
        .unwrap();
    assert!(result.created);
    assert_eq!(api_requests(&dv, "PATCH"), vec![503, 503, 503, 201]);
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_retries_run_out_should_return_a_retryable_error_with_the_delay() {
    let dv = start().await;
    let client = client_with(&dv, 2);
    dv.sim.set_faults(Faults {
        fail_next: vec![503; 5],
        retry_after_secs: 0,
        ..Faults::default()
    });
    let err = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Down"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert!(err.request_id().is_some());
    assert_eq!(api_requests(&dv, "PATCH").len(), 3);
}

#[tokio::test]
async fn when_the_token_expires_mid_run_should_renew_once_and_go_on() {
    let dv = start().await;
    let client = client(&dv);
    client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Before"))
        .await
        .unwrap();
    dv.sim.expire_all_tokens();
    let after = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("After"))
        .await
        .unwrap();
    assert!(!after.created);
    assert_eq!(api_requests(&dv, "PATCH"), vec![201, 401, 200]);
    assert_eq!(token_requests(&dv), 2);
    assert_eq!(dv.sim.records("leads")[0]["subject"], json!("After"));
}

#[tokio::test]
async fn when_a_column_is_too_long_should_fail_at_once_without_retrying() {
    let dv = start().await;
    let client = client(&dv);
    let err = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead(&"x".repeat(400)))
        .await
        .unwrap_err();
    match &err {
        DataverseError::Validation {
            code, request_id, ..
        } => {
            assert_eq!(code, CODE_VALIDATION);
            assert!(request_id.is_some());
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(api_requests(&dv, "PATCH"), vec![400]);
    assert!(dv.sim.records("leads").is_empty());
}

#[tokio::test]
async fn when_a_hand_made_lead_exists_should_adopt_it_instead_of_creating_another() {
    let dv = start().await;
    let client = client(&dv);
    // `contains` also matches this one; the exact-domain check must skip it.
    dv.sim.insert_record(
        "leads",
        json!({"companyname": "Not Contoso", "websiteurl": "https://www.notcontoso.com"}),
    );
    let id = dv.sim.insert_record(
        "leads",
        json!({"companyname": "Contoso", "websiteurl": "https://www.contoso.com"}),
    );
    let found = client
        .find_by_domain("leads", KEY, "contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.key, None);
    assert_eq!(
        client
            .find_by_domain("leads", KEY, "fabrikam.com")
            .await
            .unwrap(),
        None
    );
    client
        .link_key("leads", &found.id, KEY, "contoso.com")
        .await
        .unwrap();
    let again = client
        .find_by_domain("leads", KEY, "contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.key.as_deref(), Some("contoso.com"));
    let upserted = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("From Hunter"))
        .await
        .unwrap();
    assert_eq!(upserted.id, id);
    assert!(!upserted.created);
    let records = dv.sim.records("leads");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["subject"], json!("From Hunter"));
}

#[tokio::test]
async fn when_linking_a_missing_record_should_fail_with_404_and_create_nothing() {
    let dv = start().await;
    let client = client(&dv);
    let err = client
        .link_key(
            "leads",
            "00000000-0000-0000-0000-0000000000aa",
            KEY,
            "contoso.com",
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
    assert_eq!(api_requests(&dv, "PATCH"), vec![404]);
    assert!(dv.sim.records("leads").is_empty());
}

#[tokio::test]
async fn when_one_batch_item_fails_should_keep_the_others() {
    let dv = start().await;
    let client = client(&dv);
    let items = vec![
        ("a.com".to_owned(), lead("A")),
        ("b.com".to_owned(), lead(&"x".repeat(400))),
        ("c.com".to_owned(), lead("C")),
    ];
    // The batch as a whole survives a 503 first.
    dv.sim.set_faults(Faults {
        fail_next: vec![503],
        retry_after_secs: 0,
        ..Faults::default()
    });
    let results = client.batch_upsert("leads", KEY, &items).await.unwrap();
    assert_eq!(results.len(), 3);
    let a = results[0].as_ref().unwrap();
    assert!(a.created);
    match &results[1] {
        Err(DataverseError::Validation { code, .. }) => assert_eq!(code, CODE_VALIDATION),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(results[2].as_ref().unwrap().created);
    let keys: Vec<Value> = dv
        .sim
        .records("leads")
        .iter()
        .map(|r| r[KEY].clone())
        .collect();
    assert_eq!(keys, vec![json!("a.com"), json!("c.com")]);

    // Sending the batch again updates instead of duplicating.
    let again = client
        .batch_upsert("leads", KEY, &[items[0].clone(), items[2].clone()])
        .await
        .unwrap();
    let again: Vec<_> = again.into_iter().map(Result::unwrap).collect();
    assert_eq!(again[0].id, a.id);
    assert!(again.iter().all(|r| !r.created));
    assert_eq!(dv.sim.records("leads").len(), 2);

    let too_many = vec![("k".to_owned(), lead("x")); MAX_BATCH_ITEMS + 1];
    assert!(matches!(
        client.batch_upsert("leads", KEY, &too_many).await,
        Err(DataverseError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn when_the_request_limit_is_hit_should_wait_for_the_window_then_succeed() {
    let dv = start().await;
    let client = client(&dv);
    dv.sim.set_limits(Limits {
        max_requests: 2,
        window: Duration::from_secs(1),
        retry_after_secs: 1,
        ..Limits::default()
    });
    for n in 0..3 {
        let key = format!("d{n}.com");
        assert!(
            client
                .upsert_by_key("leads", KEY, &key, &lead("Limited"))
                .await
                .unwrap()
                .created
        );
    }
    let statuses = api_requests(&dv, "PATCH");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3);
    assert_eq!(dv.sim.records("leads").len(), 3);
}

#[tokio::test]
async fn when_the_client_secret_is_wrong_should_fail_with_auth_and_send_nothing() {
    let dv = start().await;
    let http = reqwest::Client::new();
    let endpoint = TokenEndpoint::new(
        http.clone(),
        &dv.token_url,
        "sim-client-id",
        Secret::new("wrong"),
    );
    let auth = DataverseAuth::new(endpoint, &dv.base_url);
    assert!(!format!("{auth:?}").contains("wrong"));
    let client = DataverseClient::new(http, &dv.base_url, auth, backoff(3)).unwrap();
    let err = client
        .upsert_by_key("leads", KEY, "contoso.com", &lead("Nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DataverseError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(api_requests(&dv, "PATCH").is_empty());
    assert_eq!(token_requests(&dv), 1);
}

/// `n` upserts of distinct keys, `at_once` at a time, through `client`.
async fn upsert_many(client: &DataverseClient, n: usize, at_once: usize) {
    use futures_util::StreamExt as _;
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            client
                .upsert_by_key("leads", KEY, &format!("d{i}.com"), &lead("Paced"))
                .await
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// 20 requests per second: one user, whose window the tests fill several times.
fn tight_limits() -> Limits {
    Limits {
        max_requests: 20,
        window: Duration::from_secs(1),
        retry_after_secs: 1,
        ..Limits::default()
    }
}

#[tokio::test]
async fn when_pushing_past_the_limit_should_pace_below_it_with_far_fewer_429s_than_a_naive_client()
{
    const REQUESTS: usize = 50;
    // Hunter's client, paced for the simulator's limit, 16 upserts at a time.
    let paced_dv = start().await;
    paced_dv.sim.set_limits(tight_limits());
    let http = reqwest::Client::new();
    let auth = DataverseAuth::new(
        TokenEndpoint::new(
            http.clone(),
            &paced_dv.token_url,
            "sim-client-id",
            Secret::new("sim-client-secret"),
        ),
        &paced_dv.base_url,
    );
    let client = DataverseClient::with_users(
        http,
        &paced_dv.base_url,
        vec![auth],
        backoff(8),
        PacerSettings::limit(20, Duration::from_secs(1)),
    )
    .unwrap();
    upsert_many(&client, REQUESTS, 16).await;
    let paced = paced_dv.sim.usage()["sim-client-id"].clone();

    // A naive client: 16 at a time, a fixed pause after each 429.
    let naive_dv = start().await;
    naive_dv.sim.set_limits(tight_limits());
    let token = naive_dv.sim.issue_access_token();
    let http = reqwest::Client::new();
    let naive = |i: usize| {
        let (http, token, api) = (&http, &token, naive_dv.api_url());
        async move {
            loop {
                let status = http
                    .patch(format!("{api}/leads({KEY}='d{i}.com')"))
                    .bearer_auth(token)
                    .header("Accept", "application/json")
                    .header("OData-MaxVersion", "4.0")
                    .header("OData-Version", "4.0")
                    .header("Content-Type", "application/json")
                    .body(json!({"subject": "Naive"}).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status.is_success() {
                    return;
                }
                assert_eq!(status.as_u16(), 429);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(0..REQUESTS)
            .map(naive)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }
    let naive = naive_dv.sim.usage()["sim-client-id"].clone();

    assert_eq!(paced_dv.sim.records("leads").len(), REQUESTS);
    assert_eq!(naive_dv.sim.records("leads").len(), REQUESTS);
    assert_eq!(
        (
            paced_dv.sim.duplicates("leads"),
            naive_dv.sim.duplicates("leads")
        ),
        (0, 0)
    );
    assert!(
        paced.throttled <= 2 && paced.throttled * 10 <= naive.throttled,
        "paced {paced:?}, naive {naive:?}"
    );
    let (_, pacer) = client.pacers()[0];
    assert_eq!(pacer.snapshot().throttled, paced.throttled);
}

#[tokio::test]
async fn when_two_application_users_are_configured_should_spread_requests_over_both() {
    let dv = DataverseSim::new(DataverseConfig {
        extra_clients: vec![("second-app".to_owned(), Secret::new("second-secret"))],
        limits: tight_limits(),
        ..DataverseConfig::default()
    })
    .serve("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let auth = |id: &str, secret: &str| {
        DataverseAuth::new(
            TokenEndpoint::new(http.clone(), &dv.token_url, id, Secret::new(secret)),
            &dv.base_url,
        )
    };
    let client = DataverseClient::with_users(
        http.clone(),
        &dv.base_url,
        vec![
            auth("sim-client-id", "sim-client-secret"),
            auth("second-app", "second-secret"),
        ],
        backoff(8),
        PacerSettings::limit(20, Duration::from_secs(1)),
    )
    .unwrap();
    assert_eq!(client.users(), ["sim-client-id", "second-app"]);

    upsert_many(&client, 60, 16).await;

    let usage = dv.sim.usage();
    let (first, second) = (&usage["sim-client-id"], &usage["second-app"]);
    assert!(
        first.requests >= 15 && second.requests >= 15,
        "both users pushed: {usage:?}"
    );
    assert_eq!(first.requests + second.requests, 60);
    assert_eq!(dv.sim.records("leads").len(), 60);
    assert_eq!(dv.sim.duplicates("leads"), 0);
}
