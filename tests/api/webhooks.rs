//! `POST /api/v1/webhooks/partner-center`: events signed as Partner Center signs them (the
//! built-in simulator's key and certificate), refused when they are not, and what they queue.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_api::router;
use hunter_core::ports::{
    OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage, SendFailure,
};
use hunter_local::sim::control::SimControl as _;
use hunter_local::sim::partner_center::{Faults, webhook_authorization};
use hunter_local::stack::Stack;
use lambda_http::tower::ServiceExt as _;
use serde_json::{Value, json};

use super::{RecordingTrigger, call, get, state, synced_stack};

const ROUTE: &str = "/api/v1/webhooks/partner-center";

/// The id of the newest referral stored.
async fn first_referral_id(state: &http_api::ApiState) -> String {
    get(state, "/api/v1/referrals?limit=1").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An event body as Partner Center posts it.
fn event(name: &str, resource_uri: Option<&str>) -> Vec<u8> {
    json!({
        "EventName": name,
        "ResourceUri": resource_uri,
        "ResourceName": "referral",
        "AuditUri": null,
        "ResourceChangeUtcDate": "2026-12-02T10:00:00Z",
    })
    .to_string()
    .into_bytes()
}

fn referral_uri(stack: &Stack, id: &str) -> String {
    format!("{}/v1.0/engagements/referrals/{id}", sim_base(stack))
}

fn sim_base(stack: &Stack) -> String {
    stack.partner_center_sim.as_ref().unwrap().base_url.clone()
}

fn certificate_url(stack: &Stack) -> String {
    stack
        .partner_center_sim
        .as_ref()
        .unwrap()
        .sim
        .webhook_certificate_url()
}

/// POSTs `body` with these headers (no bearer token): the status and the JSON answer.
async fn post(
    state: &http_api::ApiState,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method("POST")
        .uri(ROUTE)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Request headers: name, value.
type Headers = Vec<(&'static str, String)>;

/// The headers Partner Center sends with `body`.
fn signed(stack: &Stack, body: &[u8]) -> Headers {
    vec![
        ("authorization", webhook_authorization(body).unwrap()),
        ("x-ms-certificate-url", certificate_url(stack)),
        ("x-ms-signature-algorithm", "rsa-sha256".to_owned()),
    ]
}

/// A referral of the simulator, changed there (status and `updatedDateTime`) as a seller's
/// action in Partner Center would.
fn change_in_partner_center(stack: &Stack, id: &str, status: &str) {
    let sim = &stack.partner_center_sim.as_ref().unwrap().sim;
    let mut referral = sim.referrals().into_iter().find(|r| r["id"] == id).unwrap();
    referral["status"] = json!(status);
    referral["updatedDateTime"] = json!("2030-01-01T00:00:00Z");
    sim.upsert_referrals(vec![referral]);
}

#[tokio::test]
async fn when_partner_center_signs_a_referral_event_should_fetch_it_and_queue_it_as_arrived_by_webhook()
 {
    let stack = synced_stack("30").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let listed = get(&state, "/api/v1/referrals?limit=1").await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["items"][0]["arrivedBy"], "sweep");
    change_in_partner_center(&stack, &id, "Closed");

    let body = event("referral-updated", Some(&referral_uri(&stack, &id)));
    let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer, json!({"outcome": "queued", "referralId": id}));
    hunter_local::worker::drain_referrals(&stack).await.unwrap();
    let stored = get(&state, &format!("/api/v1/referrals/{id}")).await;
    assert_eq!(stored["arrivedBy"], "webhook", "{stored}");
    assert_eq!(stored["status"], "Closed");

    // The same event again (Partner Center delivers at least once): queued, and the stored
    // referral is unchanged by it.
    let (status, _) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    hunter_local::worker::drain_referrals(&stack).await.unwrap();
    assert_eq!(
        get(&state, &format!("/api/v1/referrals/{id}")).await,
        stored
    );

    let activity = get(&state, "/api/v1/webhooks").await;
    assert_eq!(
        (
            &activity["received"],
            &activity["queued"],
            &activity["refused"]
        ),
        (&json!(2), &json!(2), &json!(0)),
        "{activity}"
    );
    assert!(activity["lastEventAt"].is_string());
}

#[tokio::test]
async fn when_an_event_is_unsigned_or_wrongly_signed_should_refuse_it_with_401_and_queue_nothing() {
    let stack = synced_stack("10").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let id = first_referral_id(&state).await;
    let body = event("referral-updated", Some(&referral_uri(&stack, &id)));
    let good = signed(&stack, &body);
    let with = |name: &str, value: &str| -> Headers {
        good.iter()
            .map(|(n, v)| {
                (
                    *n,
                    if *n == name {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let other_signature = webhook_authorization(b"another body").unwrap();
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        ("no signature headers", body.clone(), vec![]),
        (
            "the API token instead of a signature",
            body.clone(),
            with("authorization", &format!("Bearer {}", super::TOKEN)),
        ),
        ("a changed body", tampered, good.clone()),
        (
            "another body's signature",
            body.clone(),
            with("authorization", &other_signature),
        ),
        (
            "a certificate from elsewhere",
            body.clone(),
            with(
                "x-ms-certificate-url",
                "https://evil.example/webhooks/cert/pcnotifications.cer",
            ),
        ),
        (
            "another algorithm",
            body.clone(),
            with("x-ms-signature-algorithm", "rsa-sha1"),
        ),
    ];
    for (case, body, headers) in cases {
        let (status, answer) = post(&state, body, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{case}");
    }
    assert_eq!(stack.referrals_queue.depth().await.unwrap().visible, 0);
    let activity = get(&state, "/api/v1/webhooks").await;
    assert_eq!(
        activity["refused"],
        json!(1),
        "anyone can post: refusals of what looks signed are recorded at most once a minute"
    );
    assert_eq!(activity["received"], json!(0));
    assert_eq!(
        activity["lastRefusal"], "the signature does not match the body",
        "the first refusal that looked signed, in Hunter's own words, never the request's text"
    );
}

#[tokio::test]
async fn when_a_signed_event_names_nothing_to_fetch_should_answer_without_queueing() {
    let stack = synced_stack("10").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let cases = [
        (
            event(
                "test-created",
                Some("https://x/webhooks/v1/registration/validationEvents/1"),
            ),
            StatusCode::OK,
            json!({"outcome": "test"}),
        ),
        (
            event("subscription-updated", Some("https://x/subscriptions/1")),
            StatusCode::OK,
            json!({"outcome": "ignored"}),
        ),
    ];
    for (body, expected_status, expected) in cases {
        let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
        assert_eq!((status, &answer), (expected_status, &expected));
    }
    // A signed body Hunter cannot act on: 200, since delivering it again would not help.
    for body in [
        event("referral-created", None),
        event("referral-created", Some("https://x/referrals/<script>")),
        b"{\"not\": \"an event\"}".to_vec(),
    ] {
        let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
        assert_eq!(
            (status, &answer),
            (StatusCode::OK, &json!({"outcome": "invalid"}))
        );
    }
    // A referral Partner Center does not have (yet): 503, so that the event comes again.
    let unknown = event(
        "referral-created",
        Some(&referral_uri(
            &stack,
            "00000000-0000-4000-8000-00000000dead",
        )),
    );
    let (status, answer) = post(&state, unknown.clone(), &signed(&stack, &unknown)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "referral_not_found");
    let oversized = vec![b' '; 64 * 1024];
    let (status, answer) = post(&state, oversized.clone(), &signed(&stack, &oversized)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        answer["error"]["code"], "payload_too_large",
        "in the API's error shape"
    );
    assert_eq!(stack.referrals_queue.depth().await.unwrap().visible, 0);

    let mut disabled = state.clone();
    disabled.webhooks = None;
    let body = event("test-created", None);
    let (status, answer) = post(&disabled, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "webhooks_disabled");
}

#[tokio::test]
async fn when_partner_center_cannot_be_reached_should_answer_503_so_that_the_event_comes_again() {
    let stack = synced_stack("10").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let id = first_referral_id(&state).await;
    let sim = &stack.partner_center_sim.as_ref().unwrap().sim;
    sim.set_faults(Faults {
        error_rate: 1.0,
        retry_after_secs: 0,
        ..Faults::default()
    });
    let body = event("referral-updated", Some(&referral_uri(&stack, &id)));
    let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "partner_center_unavailable");
    assert_eq!(stack.referrals_queue.depth().await.unwrap().visible, 0);

    sim.set_faults(Faults::default());
    let (status, _) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "delivered again, it is taken");
}

#[tokio::test]
async fn when_the_activity_is_asked_for_without_the_api_token_should_answer_401() {
    let stack = synced_stack("5").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let request = Request::builder()
        .uri("/api/v1/webhooks")
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, activity) = call(&state, "GET", "/api/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(activity["received"], 0);
    assert_eq!(
        activity["registration"],
        Value::Null,
        "--once registers nothing"
    );
}

#[tokio::test]
async fn when_the_referral_is_too_large_for_a_message_should_travel_by_reference_or_be_kept_as_invalid()
 {
    let stack = synced_stack("5").await;
    let state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    let sim = &stack.partner_center_sim.as_ref().unwrap().sim;
    let mut referrals = sim.referrals();
    referrals.retain(|r| r["id"].is_string());
    let (mut large, mut huge) = (referrals[0].clone(), referrals[1].clone());
    large["notes"] = json!("a".repeat(300 * 1024));
    large["updatedDateTime"] = json!("2030-01-01T00:00:00Z");
    huge["notes"] = json!("b".repeat(1100 * 1024));
    huge["updatedDateTime"] = json!("2030-01-01T00:00:00Z");
    let (large_id, huge_id) = (
        large["id"].as_str().unwrap().to_owned(),
        huge["id"].as_str().unwrap().to_owned(),
    );
    sim.upsert_referrals(vec![large, huge]);

    let body = event("referral-updated", Some(&referral_uri(&stack, &large_id)));
    let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "by reference: {answer}");
    hunter_local::worker::drain_referrals(&stack).await.unwrap();
    let stored = get(&state, &format!("/api/v1/referrals/{large_id}")).await;
    assert_eq!(
        (&stored["arrivedBy"], &stored["eligible"].is_boolean()),
        (&json!("webhook"), &true),
        "{}",
        stored["skipReason"]
    );

    let body = event("referral-updated", Some(&referral_uri(&stack, &huge_id)));
    let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(
        (status, &answer),
        (
            StatusCode::OK,
            &json!({"outcome": "recorded_invalid", "referralId": huge_id})
        )
    );
    let invalid = get(
        &state,
        "/api/v1/referrals?skipReason=invalid_payload&limit=50",
    )
    .await;
    assert!(
        invalid["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["skipDetail"]
                .as_str()
                .is_some_and(|d| d.contains("bytes"))),
        "kept with its reason, never dropped: {invalid}"
    );
}

/// The referrals queue, refusing every send as unavailable.
struct DownQueue(std::sync::Arc<dyn Queue>);

#[async_trait::async_trait]
impl Queue for DownQueue {
    async fn send_batch(&self, _: &[OutgoingMessage]) -> Result<Vec<SendFailure>, QueueError> {
        Err(QueueError::Unavailable("the queue is down".into()))
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Option<std::time::Duration>,
        wait: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.0.receive(max, visibility, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.0.delete(receipt).await
    }
    async fn change_visibility(
        &self,
        receipt: &str,
        timeout: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.0.change_visibility(receipt, timeout).await
    }
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.0.depth().await
    }
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.0.peek_dead_letters(max).await
    }
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.0.take_dead_letters(max).await
    }
    async fn redrive_dead_letters(&self) -> Result<usize, QueueError> {
        self.0.redrive_dead_letters().await
    }
}

#[tokio::test]
async fn when_the_queue_is_down_should_answer_503_so_that_the_event_comes_again() {
    let stack = synced_stack("5").await;
    let mut state = state(&stack, std::sync::Arc::new(RecordingTrigger::default()));
    state.referrals_queue = std::sync::Arc::new(DownQueue(stack.referrals_queue.clone()));
    let id = first_referral_id(&state).await;
    let body = event("referral-updated", Some(&referral_uri(&stack, &id)));
    let (status, answer) = post(&state, body.clone(), &signed(&stack, &body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "queue_unavailable");
    let activity = get(&state, "/api/v1/webhooks").await;
    assert_eq!(activity["queued"], json!(0), "{activity}");
}
