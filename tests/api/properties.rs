//! Hostile query strings, as a property: whatever follows the `?` of the list routes, the API
//! answers 200 or a JSON 400 that says why — never a 500, never a panic. Through the router over a
//! synced in-memory stack, built once; 64 cases.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_api::router;
use lambda_http::tower::ServiceExt as _;
use proptest::prelude::*;
use proptest::string::string_regex;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::{RecordingTrigger, TOKEN, state, synced_stack};

const PATHS: [&str; 4] = [
    "/api/v1/leads",
    "/api/v1/leads/export.csv",
    "/api/v1/referrals",
    "/api/v1/sync-runs",
];

/// Every byte but the unreserved ones as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    string_regex(&format!("(?s).{{0,{max}}}")).unwrap()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "segment", "provider", "priorityCategory", "minScore", "syncStatus", "scanState", "q",
            "sort", "limit", "cursor", "status", "substatus", "eligible", "skipReason",
            "min_score", "LIMIT", "limit[]", "",
        ])
        .prop_map(str::to_owned),
        1 => any_text(10),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "", " ", "0", "1", "-1", "200", "201", "18446744073709551616", "1e3", "0x10", "NaN",
            "true", "TRUE", "yes", "P1", "P1,P2", "P1,,P2", "P7", ",", "score", "-score",
            "domain", "referrals", "updated", "ok", "failed", "synced", "pending", "M365", "a",
            "not_eligible_status", "consumer_domain", "AAAA", "_-_-", "e30", "ZGVsZXRlZA",
            "\u{0}", "%", "%zz", "\u{202e}", "🙂",
        ])
        .prop_map(str::to_owned),
        1 => any_text(60),
        1 => string_regex("[A-Za-z0-9_-]{0,40}").unwrap(),
    ]
}

/// A query string: pairs encoded the way a browser would (space as `+` or `%20`), or raw
/// characters a URI allows, stray `%` and undecodable bytes included.
fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec((name(), value(), any::<bool>(), any::<bool>()), 0..6)
            .prop_map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(n, v, plus, bare)| {
                        let v = percent_encode(&v);
                        let v = if plus { v.replace("%20", "+") } else { v };
                        if bare { percent_encode(&n) } else { format!("{}={v}", percent_encode(&n)) }
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            }),
        1 => string_regex("[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,200}").unwrap(),
        1 => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect()),
    ]
}

#[test]
fn properties_any_query_string_answers_200_or_a_json_400() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stack = runtime.block_on(synced_stack("20"));
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(
        &(prop::sample::select(PATHS.to_vec()), query()),
        |(path, query)| {
            let uri = format!("{path}?{query}");
            let Ok(request) = Request::builder()
                .uri(&uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
            else {
                return Err(TestCaseError::reject("not a URI"));
            };
            let (status, content_type, bytes) = runtime.block_on(async {
                let response = router(state.clone()).oneshot(request).await.unwrap();
                let status = response.status();
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                (status, content_type, bytes)
            });
            let body = String::from_utf8_lossy(&bytes);
            match status {
                StatusCode::OK if path.ends_with(".csv") => {
                    prop_assert!(
                        content_type.starts_with("text/csv"),
                        "{uri}: {content_type}"
                    );
                    prop_assert!(body.starts_with("domain,"), "{uri}: {body}");
                }
                StatusCode::OK => {
                    let json: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("{uri}: {e}: {body}")))?;
                    prop_assert!(json["items"].is_array(), "{uri}: {json}");
                }
                StatusCode::BAD_REQUEST => {
                    prop_assert!(
                        content_type.starts_with("application/json"),
                        "{uri}: {content_type}"
                    );
                    let json: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("{uri}: {e}: {body}")))?;
                    prop_assert_eq!(&json["error"]["code"], "bad_request", "{}: {}", uri, json);
                    prop_assert!(
                        json["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()),
                        "{uri}: {json}"
                    );
                }
                other => prop_assert!(false, "{uri}: {other} {body}"),
            }
            Ok(())
        },
    );
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
