//! People signed in to the UI with Entra ID: their access tokens are accepted beside the API
//! token when the issuer, the audience, the validity times and the signature (against the
//! tenant's published keys, served here on loopback) all check out; anything else is a 401,
//! and keys that cannot be read are a 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_api::{ApiState, router};
use hunter_core::adapters::EntraTokenVerifier;
use hunter_core::config::EntraApi;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use lambda_http::tower::ServiceExt as _;
use serde_json::{Value, json};

use crate::{RecordingTrigger, TOKEN, state, synced_stack};

const ISSUER: &str = "https://login.microsoftonline.com/test-tenant/v2.0";
const AUDIENCE: &str = "api://hunter";
const JWKS: &str = include_str!("../fixtures/entra/jwks.json");
const KEY: &[u8] = include_bytes!("../fixtures/entra/test-signing-key.pem");
const OTHER_KEY: &[u8] = include_bytes!("../fixtures/entra/other-signing-key.pem");

/// The tenant's keys on loopback, counting how often they are read; `None`: the keys endpoint
/// is down (500).
async fn serve_keys(up: bool) -> (String, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let app = axum::Router::new().route(
        "/keys",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if up {
                    (StatusCode::OK, JWKS)
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, reads)
}

async fn entra_state(keys_url: String) -> ApiState {
    let stack = synced_stack("3").await;
    let mut state = state(&stack, Arc::new(RecordingTrigger::default()));
    state.access_tokens = Some(Arc::new(EntraTokenVerifier::new(
        reqwest::Client::new(),
        EntraApi {
            issuer: ISSUER.to_owned(),
            audience: format!("00000000-aaaa-bbbb-cccc-000000000000, {AUDIENCE}"),
            jwks_url: keys_url,
        },
    )));
    state
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "oid": "5f7c6a0e-0000-4000-8000-000000000001",
        "name": "Ada Seller",
        "scp": "access_as_user",
    })
}

fn token(claims: &Value, kid: &str, key: &[u8]) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

async fn status_of(state: &ApiState, path: &str, bearer: &str) -> (StatusCode, Value) {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {bearer}"))
        .body(Body::empty())
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

#[tokio::test]
async fn when_a_signed_in_persons_token_checks_out_should_answer_and_read_the_keys_once() {
    let (keys_url, reads) = serve_keys(true).await;
    let state = entra_state(keys_url).await;
    let valid = token(&claims(), "test-key-1", KEY);
    for _ in 0..3 {
        let (status, body) = status_of(&state, "/api/v1/stats", &valid).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The other published key, and the other accepted audience.
    let second = token(
        &with(
            claims(),
            "aud",
            json!("00000000-aaaa-bbbb-cccc-000000000000"),
        ),
        "test-key-2",
        OTHER_KEY,
    );
    assert_eq!(
        status_of(&state, "/api/v1/stats", &second).await.0,
        StatusCode::OK
    );
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the keys are cached");
    // The API token still works beside sign-ins, and /health shows its details to both.
    assert_eq!(
        status_of(&state, "/api/v1/stats", TOKEN).await.0,
        StatusCode::OK
    );
    let (_, health) = status_of(&state, "/api/v1/health", &valid).await;
    assert!(health["queues"].is_object(), "{health}");
}

#[tokio::test]
async fn when_a_token_is_not_for_this_api_or_not_valid_now_should_refuse_it_with_401() {
    let (keys_url, reads) = serve_keys(true).await;
    let state = entra_state(keys_url).await;
    let refused = [
        (
            "another audience",
            token(
                &with(claims(), "aud", json!("api://other")),
                "test-key-1",
                KEY,
            ),
        ),
        (
            "another issuer",
            token(
                &with(
                    claims(),
                    "iss",
                    json!("https://login.microsoftonline.com/evil/v2.0"),
                ),
                "test-key-1",
                KEY,
            ),
        ),
        (
            "expired",
            token(
                &with(claims(), "exp", json!(now() - 600)),
                "test-key-1",
                KEY,
            ),
        ),
        (
            "not valid yet",
            token(
                &with(claims(), "nbf", json!(now() + 600)),
                "test-key-1",
                KEY,
            ),
        ),
        (
            "signed by a key the tenant did not publish under that id",
            token(&claims(), "test-key-1", OTHER_KEY),
        ),
        ("an unknown key id", token(&claims(), "no-such-key", KEY)),
        (
            "no expiry",
            token(
                &json!({"iss": ISSUER, "aud": AUDIENCE, "oid": "x"}),
                "test-key-1",
                KEY,
            ),
        ),
        ("HS256 with the public key as secret", {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("test-key-1".to_owned());
            encode(
                &header,
                &claims(),
                &EncodingKey::from_secret(JWKS.as_bytes()),
            )
            .unwrap()
        }),
        ("unsigned", {
            let token = token(&claims(), "test-key-1", KEY);
            let (unsigned, _) = token.rsplit_once('.').unwrap();
            format!("{unsigned}.")
        }),
        ("not a token", "a.b.c".to_owned()),
    ];
    for (what, bearer) in refused {
        let (status, body) = status_of(&state, "/api/v1/leads", &bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        // /health stays open, without its details.
        let (status, health) = status_of(&state, "/api/v1/health", &bearer).await;
        assert_eq!(status, StatusCode::OK);
        assert!(health.get("queues").is_none(), "{what}: {health}");
    }
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "an unknown key id does not make every request read the keys again"
    );
}

#[tokio::test]
async fn when_the_tenants_keys_cannot_be_read_should_answer_503_and_still_take_the_api_token() {
    let (keys_url, _) = serve_keys(false).await;
    let state = entra_state(keys_url).await;
    let (status, body) = status_of(
        &state,
        "/api/v1/stats",
        &token(&claims(), "test-key-1", KEY),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "auth_unavailable");
    assert_eq!(
        status_of(&state, "/api/v1/stats", TOKEN).await.0,
        StatusCode::OK
    );
}
