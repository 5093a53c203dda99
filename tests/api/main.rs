//! The http-api function as Lambda runs it: API Gateway HTTP API (payload 2.0) event JSON in,
//! through lambda_http's own adapter, API Gateway response JSON out; and its sync trigger, the
//! asynchronous Lambda invocation of fetch-referrals, over real HTTP with the AWS SDK.

#![allow(clippy::unwrap_used)]

mod entra;
mod leads;
mod properties;
mod routes;
mod webhooks;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use http_api::{ApiState, WebhookIntake, api_token, router};
use hunter_core::adapters::LambdaSyncTrigger;
use hunter_core::ports::SyncTrigger;
use hunter_core::ports::TriggerError;
use hunter_core::secret::Secret;
use hunter_domain::model::SyncRun;
use hunter_local::cli::Args;
use hunter_local::stack::Stack;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt as _;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::Value;

const TOKEN: &str = "fixture-token";

/// Remembers the sync requests it was given.
#[derive(Debug, Default)]
struct RecordingTrigger(Mutex<Vec<Option<String>>>);

#[async_trait]
impl SyncTrigger for RecordingTrigger {
    async fn request_sync(&self, run_id: Option<&str>) -> Result<(), TriggerError> {
        self.0.lock().unwrap().push(run_id.map(str::to_owned));
        Ok(())
    }
}

/// A store and queue holding one synced run of `seed` generated referrals.
async fn synced_stack(seed: &str) -> Arc<Stack> {
    let stack = Arc::new(
        Stack::build(&Args::parse_from([
            "hunter-local",
            "--in-memory",
            "--once",
            "--no-dynamics",
            "--seed",
            seed,
        ]))
        .await
        .unwrap(),
    );
    hunter_local::run_once(&stack).await.unwrap();
    stack
}

fn state(stack: &Stack, sync: Arc<dyn SyncTrigger>) -> ApiState {
    ApiState {
        store: stack.store.clone(),
        referrals_queue: stack.referrals_queue.clone(),
        push_queue: stack.push_queue.clone(),
        sync,
        scanner: stack.scanner.clone(),
        rules: Arc::new(stack.rules.clone()),
        api_token: Secret::new(TOKEN),
        access_tokens: None,
        ui_origins: Vec::new(),
        webhooks: Some(WebhookIntake::new(
            stack.webhook_verifier.clone(),
            stack.source.clone(),
        )),
    }
}

/// `event` through lambda_http's adapter, as `lambda_http::run` serves it; the response as
/// API Gateway receives it (`statusCode`, `headers`, `body`).
async fn invoke(state: ApiState, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).unwrap();
    let response = Adapter::from(router(state))
        .oneshot(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

/// `method uri` with the API token and an optional JSON body: the status and the JSON answer
/// (null when the body is not JSON).
pub(crate) async fn call(
    state: &http_api::ApiState,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `GET uri`, which must answer 200.
pub(crate) async fn get(state: &http_api::ApiState, uri: &str) -> Value {
    let (status, body) = call(state, "GET", uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

/// Every item of a listing, following its cursors.
pub(crate) async fn all(state: &http_api::ApiState, uri: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_uri = match &cursor {
            Some(c) => format!("{uri}&cursor={c}"),
            None => uri.to_owned(),
        };
        let page = get(state, &page_uri).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

fn fixture(name: &str) -> Value {
    let text = match name {
        "health" => include_str!("../fixtures/events/apigw-http-health.json"),
        "referrals" => include_str!("../fixtures/events/apigw-http-referrals.json"),
        "sync" => include_str!("../fixtures/events/apigw-http-sync.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn when_api_gateway_sends_payload_2_events_should_route_them_and_answer_in_its_shape() {
    let stack = synced_stack("30").await;
    let trigger = Arc::new(RecordingTrigger::default());
    let state = state(&stack, trigger.clone());

    let health = invoke(state.clone(), fixture("health")).await;
    assert_eq!(health["statusCode"], 200);
    assert_eq!(body(&health)["status"], "ok");

    let referrals = invoke(state.clone(), fixture("referrals")).await;
    assert_eq!(referrals["statusCode"], 200, "{referrals}");
    assert_eq!(referrals["headers"]["content-type"], "application/json");
    let listed = body(&referrals);
    let items = listed["items"].as_array().unwrap();
    assert!(
        !items.is_empty() && items.len() <= 5,
        "limit=5 honoured: {}",
        items.len()
    );
    assert!(
        items.iter().all(|r| r["eligible"] == false),
        "eligible=false filter applied"
    );
    assert!(
        items.iter().all(|r| r.get("raw").is_none()),
        "lists omit raw"
    );
    assert!(
        listed["nextCursor"].is_string(),
        "more skipped referrals follow"
    );

    let sync = invoke(state.clone(), fixture("sync")).await;
    assert_eq!(sync["statusCode"], 202, "{sync}");
    let accepted = body(&sync);
    assert_eq!(accepted["inProgress"], false, "{accepted}");
    let run_id = accepted["runId"].as_str().unwrap().to_owned();
    assert_eq!(*trigger.0.lock().unwrap(), vec![Some(run_id)]);

    let mut lowercase = fixture("referrals");
    lowercase["headers"]["authorization"] = Value::from("bearer fixture-token");
    let answer = invoke(state, lowercase).await;
    assert_eq!(
        answer["statusCode"], 200,
        "the auth scheme is case-insensitive"
    );
}

#[tokio::test]
async fn when_the_newest_run_is_still_running_should_answer_its_id_and_ask_to_continue_it() {
    let stack = synced_stack("3").await;
    let running = SyncRun::start("run-continued".to_owned(), chrono::Utc::now());
    stack.store.put_sync_run(&running).await.unwrap();
    let trigger = Arc::new(RecordingTrigger::default());
    let answer = invoke(state(&stack, trigger.clone()), fixture("sync")).await;
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(body(&answer)["runId"], "run-continued");
    assert_eq!(body(&answer)["inProgress"], true);
    assert_eq!(
        *trigger.0.lock().unwrap(),
        vec![None],
        "the function resumes the run"
    );
}

#[tokio::test]
async fn when_the_bearer_token_is_missing_or_wrong_should_refuse_with_401() {
    let stack = synced_stack("5").await;
    let trigger = Arc::new(RecordingTrigger::default());
    let state = state(&stack, trigger.clone());

    let mut missing = fixture("sync");
    missing["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let mut wrong = fixture("referrals");
    wrong["headers"]["authorization"] = Value::from("Bearer fixture-tokeN");
    for event in [missing, wrong] {
        let answer = invoke(state.clone(), event).await;
        assert_eq!(answer["statusCode"], 401, "{answer}");
        assert_eq!(answer["headers"]["www-authenticate"], "Bearer");
        assert_eq!(body(&answer)["error"]["code"], "unauthorized");
    }
    assert!(
        trigger.0.lock().unwrap().is_empty(),
        "no sync started without auth"
    );
}

#[tokio::test]
async fn when_the_route_is_unknown_should_answer_a_json_404() {
    let stack = synced_stack("1").await;
    let mut event = fixture("referrals");
    event["rawPath"] = Value::from("/api/v1/nothing-here");
    event["requestContext"]["http"]["path"] = Value::from("/api/v1/nothing-here");
    let answer = invoke(state(&stack, Arc::new(RecordingTrigger::default())), event).await;
    assert_eq!(answer["statusCode"], 404, "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "not_found");
}

#[test]
fn when_no_api_token_is_configured_should_refuse_to_start() {
    assert!(api_token(Secret::new("")).is_err());
    assert!(api_token(Secret::new("  \n")).is_err());
    assert_eq!(api_token(Secret::new("s3cret")).unwrap().expose(), "s3cret");
}

/// What a fake Lambda endpoint saw, and the answer it gives.
#[derive(Debug, Default)]
struct LambdaEndpoint {
    seen: Mutex<Vec<(String, Option<String>, Value)>>,
    /// `(status, x-amzn-ErrorType)` to answer instead of 202.
    failure: Option<(StatusCode, &'static str)>,
}

async fn invocations(
    State(endpoint): State<Arc<LambdaEndpoint>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .map(|v| v.to_str().unwrap().to_owned());
    endpoint.seen.lock().unwrap().push((
        function,
        invocation_type,
        serde_json::from_str(&body).unwrap(),
    ));
    match endpoint.failure {
        None => StatusCode::ACCEPTED.into_response(),
        Some((status, error_type)) => (
            status,
            [("x-amzn-errortype", error_type)],
            axum::Json(serde_json::json!({"Type": "User", "message": "refused by test"})),
        )
            .into_response(),
    }
}

/// The Lambda API at a loopback address, and a trigger pointed at it with the real SDK.
async fn lambda_endpoint(endpoint: Arc<LambdaEndpoint>) -> LambdaSyncTrigger {
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            axum::routing::post(invocations),
        )
        .with_state(endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    LambdaSyncTrigger::new(aws_sdk_lambda::Client::new(&sdk), "hunter-fetch-referrals")
}

#[tokio::test]
async fn when_a_sync_is_requested_on_aws_should_invoke_fetch_referrals_asynchronously() {
    let endpoint = Arc::new(LambdaEndpoint::default());
    let trigger = lambda_endpoint(endpoint.clone()).await;
    trigger.request_sync(Some("run-42")).await.unwrap();
    trigger.request_sync(None).await.unwrap();
    let seen = endpoint.seen.lock().unwrap();
    let event = |payload| {
        (
            "hunter-fetch-referrals".to_owned(),
            Some("Event".to_owned()),
            payload,
        )
    };
    assert_eq!(
        *seen,
        vec![
            event(serde_json::json!({"runId": "run-42"})),
            event(serde_json::json!({}))
        ]
    );
}

#[tokio::test]
async fn when_lambda_refuses_the_invocation_should_type_the_error_and_answer_500_or_503() {
    let throttled = lambda_endpoint(Arc::new(LambdaEndpoint {
        failure: Some((StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException")),
        ..LambdaEndpoint::default()
    }))
    .await;
    let err = throttled.request_sync(Some("r")).await.unwrap_err();
    assert!(
        matches!(err, TriggerError::Unavailable(_)) && err.is_retryable(),
        "{err:?}"
    );

    let missing = lambda_endpoint(Arc::new(LambdaEndpoint {
        failure: Some((StatusCode::NOT_FOUND, "ResourceNotFoundException")),
        ..LambdaEndpoint::default()
    }))
    .await;
    let err = missing.request_sync(Some("r")).await.unwrap_err();
    assert!(
        matches!(err, TriggerError::Invalid(_)) && !err.is_retryable(),
        "{err:?}"
    );

    let stack = synced_stack("1").await;
    let answer = invoke(state(&stack, Arc::new(throttled)), fixture("sync")).await;
    assert_eq!(answer["statusCode"], 503, "{answer}");
    assert_eq!(answer["headers"]["retry-after"], "5");
    assert_eq!(body(&answer)["error"]["code"], "sync_unavailable");

    let answer = invoke(state(&stack, Arc::new(missing)), fixture("sync")).await;
    assert_eq!(answer["statusCode"], 500, "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "sync_misconfigured");
}
