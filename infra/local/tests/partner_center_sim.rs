//! The Partner Center simulator over real HTTP, and the referral seed generator.
#![allow(clippy::unwrap_used)]

use hunter_local::sim::control::SimControl as _;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hunter_core::http::TokenEndpoint;
use hunter_core::partner_center::{
    PartnerCenterAuth, PartnerCenterClient, RefreshTokenStore, StoredRefreshToken, TokenVersion,
};
use hunter_core::ports::ReferralFilter;
use hunter_core::ports::ReferralSource as _;
use hunter_core::ports::StoreError;
use hunter_core::retry::Backoff;
use hunter_core::secret::Secret;
use hunter_domain::referral::parse_referral_value;
use hunter_domain::rules::{
    DomainSource, Eligibility, Rules, SkipReason, eligibility, extract_domain,
};
use hunter_local::sim::partner_center::{
    DEFAULT_REFRESH_TOKEN, Faults, PartnerCenterSim, RunningSim, SimConfig,
};
use hunter_local::sim::seed::{SEED_EPOCH_UNIX, generate_referrals, load_referrals_file};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REFERRALS: &str = "/v1.0/engagements/referrals";

async fn start(referrals: Vec<Value>, config: SimConfig) -> RunningSim {
    PartnerCenterSim::new(referrals, config)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn referral(
    id: &str,
    direction: &str,
    status: &str,
    substatus: &str,
    kind: &str,
    updated: &str,
) -> Value {
    json!({
        "id": id, "direction": direction, "status": status, "substatus": substatus, "type": kind,
        "qualification": "SalesQualified", "engagementId": format!("eng-{id}"),
        "createdDateTime": "2026-09-01T00:00:00Z", "updatedDateTime": updated,
        "eTag": format!("\"etag-{id}\""),
        "details": {"dealValue": 1000, "currency": "USD"},
    })
}

/// Seven referrals, stored out of update order.
fn fixture() -> Vec<Value> {
    vec![
        referral(
            "r1",
            "Incoming",
            "New",
            "Pending",
            "Shared",
            "2026-10-05T10:00:00.1234567Z",
        ),
        referral(
            "r2",
            "Incoming",
            "Active",
            "Accepted",
            "Independent",
            "2026-10-01T10:00:00Z",
        ),
        referral(
            "r3",
            "Outgoing",
            "New",
            "Pending",
            "Shared",
            "2026-10-03T10:00:00.12Z",
        ),
        referral(
            "r4",
            "Incoming",
            "Closed",
            "Won",
            "Independent",
            "2026-10-07T10:00:00Z",
        ),
        referral(
            "r5",
            "Incoming",
            "New",
            "Received",
            "Independent",
            "2026-10-02T10:00:00Z",
        ),
        referral(
            "r6",
            "Incoming",
            "Closed",
            "Declined",
            "Shared",
            "2026-10-06T10:00:00Z",
        ),
        referral(
            "r7",
            "Outgoing",
            "Active",
            "Accepted",
            "Independent",
            "2026-10-04T10:00:00.000Z",
        ),
    ]
}

fn ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("<none>").to_owned())
        .collect()
}

async fn list(
    http: &reqwest::Client,
    sim: &RunningSim,
    token: &str,
    query: &[(&str, &str)],
) -> reqwest::Response {
    http.get(format!("{}{REFERRALS}", sim.base_url))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap()
}

async fn refresh(
    http: &reqwest::Client,
    sim: &RunningSim,
    refresh_token: &str,
) -> reqwest::Response {
    http.post(&sim.token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "sim-client"),
            ("refresh_token", refresh_token),
            (
                "scope",
                "https://api.partner.microsoft.com/.default offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
}

fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["target"], json!("referral"));
    assert!(body["error"]["innerError"]["code"].is_string(), "{body}");
    assert!(body["error"]["innerError"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn when_refresh_token_is_used_should_rotate_and_refuse_the_old_one() {
    let sim = start(fixture(), SimConfig::default()).await;
    let http = reqwest::Client::new();
    assert_eq!(sim.sim.current_refresh_token(), DEFAULT_REFRESH_TOKEN);

    let first = refresh(&http, &sim, DEFAULT_REFRESH_TOKEN).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().contains_key("request-id"));
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["token_type"], json!("Bearer"));
    assert_eq!(
        body["expires_in"],
        json!("3600"),
        "expires_in is a string, like the documented v1 answer"
    );
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, DEFAULT_REFRESH_TOKEN);
    assert_eq!(sim.sim.current_refresh_token(), rotated);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        list(&http, &sim, &access, &[]).await.status(),
        StatusCode::OK
    );

    let reused = refresh(&http, &sim, DEFAULT_REFRESH_TOKEN).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let error: Value = reused.json().await.unwrap();
    assert_eq!(error["error"], json!("invalid_grant"));
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS")
    );

    let next = refresh(&http, &sim, &rotated).await;
    assert_eq!(next.status(), StatusCode::OK);
    let next: Value = next.json().await.unwrap();
    assert_ne!(next["refresh_token"].as_str().unwrap(), rotated);

    let no_client = http
        .post(&sim.token_url)
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_client.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        no_client.json::<Value>().await.unwrap()["error"],
        json!("invalid_request")
    );
    let odd_grant = http
        .post(&sim.token_url)
        .form(&[("grant_type", "password"), ("client_id", "c")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        odd_grant.json::<Value>().await.unwrap()["error"],
        json!("unsupported_grant_type")
    );
    // The token endpoint never appears with a token in the log.
    let log = serde_json::to_string(&sim.sim.requests()).unwrap();
    assert!(!log.contains(&rotated) && !log.contains(&access));
}

#[tokio::test]
async fn when_signing_in_with_a_device_code_should_answer_pending_then_tokens() {
    let sim = start(
        fixture(),
        SimConfig {
            initial_refresh_token: hunter_core::secret::Secret::new("first-rt"),
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let start_answer: Value = http
        .post(sim.device_code_url())
        .form(&[
            ("client_id", "sim-client"),
            (
                "scope",
                "https://api.partner.microsoft.com/.default offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["device_code", "user_code", "verification_uri", "message"] {
        assert!(start_answer[field].is_string(), "{field}: {start_answer}");
    }
    assert!(start_answer["expires_in"].is_u64() && start_answer["interval"].is_u64());
    let poll = || {
        http.post(&sim.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "sim-client"),
                ("device_code", start_answer["device_code"].as_str().unwrap()),
            ])
            .send()
    };
    let pending = poll().await.unwrap();
    assert_eq!(pending.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        pending.json::<Value>().await.unwrap()["error"],
        json!("authorization_pending")
    );
    let granted = poll().await.unwrap();
    assert_eq!(granted.status(), StatusCode::OK);
    let tokens: Value = granted.json().await.unwrap();
    assert_eq!(tokens["expires_in"], json!("3600"));
    assert_eq!(
        sim.sim.current_refresh_token(),
        tokens["refresh_token"].as_str().unwrap()
    );
    assert_eq!(
        poll().await.unwrap().json::<Value>().await.unwrap()["error"],
        json!("invalid_grant")
    );
    // The sign-in replaced the refresh token.
    assert_eq!(
        refresh(&http, &sim, "first-rt").await.status(),
        StatusCode::BAD_REQUEST
    );
    let token = tokens["access_token"].as_str().unwrap();
    assert_eq!(list(&http, &sim, token, &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn when_the_token_is_missing_bad_or_expired_should_answer_401_with_the_error_body() {
    let sim = start(fixture(), SimConfig::default()).await;
    let http = reqwest::Client::new();
    let url = format!("{}{REFERRALS}", sim.base_url);

    let missing = http
        .get(&url)
        .header("client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let request_id = missing.headers()["request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    assert_eq!(missing.headers()["client-request-id"], "abc-123");
    assert_error_body(&missing.json().await.unwrap(), "unauthenticated");

    let bad = http.get(&url).bearer_auth("forged").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_error_body(&bad.json().await.unwrap(), "unauthenticated");
    let basic = http
        .get(&url)
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let token = sim.sim.issue_access_token();
    assert_eq!(
        http.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    sim.sim.expire_all_tokens();
    let expired = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let body: Value = expired.json().await.unwrap();
    assert_error_body(&body, "unauthenticated");
    assert_eq!(body["error"]["innerError"]["code"], "ExpiredToken");

    let fresh = sim.sim.issue_access_token();
    let expire = http
        .post(format!("{}/_sim/expire-tokens", sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        http.get(&url)
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let log = sim.sim.requests();
    assert_eq!(log.len(), 6, "control routes are not recorded: {log:?}");
    assert_eq!(log[0].request_id, request_id);
    assert_eq!(log[0].client_request_id.as_deref(), Some("abc-123"));
    assert_eq!(
        log.iter().map(|r| r.auth_ok).collect::<Vec<_>>(),
        vec![false, false, false, true, false, false]
    );
    assert!(log.iter().all(|r| r.method == "GET" && r.path == REFERRALS));
}

#[tokio::test]
async fn when_the_token_outlives_its_ttl_should_answer_401_with_the_error_body() {
    // A TTL of zero: the token has expired by the time it is used, without racing a clock.
    let sim = start(
        fixture(),
        SimConfig {
            access_token_ttl: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    let token = sim.sim.issue_access_token();
    let expired = reqwest::Client::new()
        .get(format!("{}{REFERRALS}", sim.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let body: Value = expired.json().await.unwrap();
    assert_error_body(&body, "unauthenticated");
    assert_eq!(body["error"]["innerError"]["code"], "ExpiredToken");
}

#[tokio::test]
async fn when_filtering_should_apply_and_or_not_parentheses_and_instants() {
    let sim = start(fixture(), SimConfig::default()).await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let ask = |filter: &'static str| {
        let (http, sim, token) = (&http, &sim, &token);
        async move {
            let response = list(
                http,
                sim,
                token,
                &[("$filter", filter), ("$orderby", "updatedDateTime asc")],
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK, "{filter}");
            ids(&response.json().await.unwrap())
        }
    };
    assert_eq!(
        ask("direction eq 'Incoming' and (status eq 'New' or status eq 'Active')").await,
        ["r2", "r5", "r1"]
    );
    assert_eq!(
        ask("(direction eq 'Incoming' and substatus eq 'Pending')").await,
        ["r1"]
    );
    assert_eq!(
        ask("status eq 'Active' and direction eq 'Outgoing' and type eq 'Independent'").await,
        ["r7"]
    );
    // `and` binds tighter than `or`.
    assert_eq!(
        ask("status eq 'Closed' or direction eq 'Outgoing' and status eq 'New'").await,
        ["r3", "r6", "r4"]
    );
    assert_eq!(
        ask("not (direction eq 'Incoming') and status ne 'New'").await,
        ["r7"]
    );
    // Instants, whatever the number of fractional digits on either side.
    assert_eq!(
        ask("updatedDateTime ge 2026-10-05T10:00:00.123Z").await,
        ["r1", "r6", "r4"]
    );
    assert_eq!(
        ask("updatedDateTime gt 2026-10-05T10:00:00.1234567Z").await,
        ["r6", "r4"]
    );
    assert_eq!(
        ask("updatedDateTime lt 2026-10-03T12:00:00.5+02:00").await,
        ["r2", "r5", "r3"]
    );
    assert_eq!(
        ask("id eq 'r3' or engagementId eq 'eng-r4'").await,
        ["r3", "r4"]
    );
    assert_eq!(
        ask("qualification eq 'SalesQualified' and createdDateTime le 2026-09-01T00:00:00Z")
            .await
            .len(),
        7
    );

    for garbage in [
        "status eq 'New' and",
        "status = 'New'",
        "(status eq 'New'",
        "nonsense eq 'x'",
        "updatedDateTime ge '2026-10-01'",
        "status eq 'unterminated",
    ] {
        let response = list(&http, &sim, &token, &[("$filter", garbage)]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{garbage}");
        assert!(response.headers().contains_key("request-id"));
        assert_error_body(&response.json().await.unwrap(), "invalidRequest");
    }
    for (option, value) in [
        ("$orderby", "updatedDateTime sideways"),
        ("$top", "0"),
        ("$top", "ten"),
        ("$count", "maybe"),
    ] {
        let response = list(&http, &sim, &token, &[(option, value)]).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{option}={value}"
        );
    }
}

#[tokio::test]
async fn when_a_quote_is_doubled_should_match_the_literal_quote() {
    let mut odd = referral(
        "r8",
        "Incoming",
        "New",
        "Pending",
        "Shared",
        "2026-10-08T00:00:00Z",
    );
    odd["name"] = json!("O'Brien - Teams");
    let sim = start(vec![odd], SimConfig::default()).await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let page: Value = list(
        &http,
        &sim,
        &token,
        &[("$filter", "name eq 'O''Brien - Teams'")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&page), ["r8"]);
}

#[tokio::test]
async fn when_paging_should_follow_absolute_next_links_on_the_other_path_until_none() {
    let sim = start(
        fixture(),
        SimConfig {
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let first = list(
        &http,
        &sim,
        &token,
        &[
            ("$top", "5"),
            ("$orderby", "updatedDateTime asc"),
            ("$count", "true"),
            ("$filter", "id ne 'nobody'"),
        ],
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let mut page: Value = first.json().await.unwrap();
    assert_eq!(page["@odata.count"], json!(7));
    assert_eq!(
        page["@odata.context"],
        json!(format!("{}/v1.0/$metadata#Referrals", sim.base_url))
    );
    let mut seen = ids(&page);
    assert_eq!(seen.len(), 3, "the server's page size wins over $top");
    let mut links = Vec::new();
    while let Some(link) = page["@odata.nextLink"].as_str().map(str::to_owned) {
        assert!(
            link.starts_with(&format!("{}/v1.0/referrals?$skiptoken=", sim.base_url)),
            "{link}"
        );
        let response = http.get(&link).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        page = response.json().await.unwrap();
        seen.extend(ids(&page));
        links.push(link);
    }
    assert_eq!(links.len(), 2);
    assert_eq!(seen, ["r2", "r5", "r3", "r7", "r1", "r6", "r4"]);
    assert!(page.get("@odata.nextLink").is_none());

    let paths: Vec<String> = sim.sim.requests().into_iter().map(|r| r.path).collect();
    assert!(paths[0].starts_with("/v1.0/engagements/referrals?"));
    assert!(
        paths[1..]
            .iter()
            .all(|p| p.starts_with("/v1.0/referrals?$skiptoken=")),
        "{paths:?}"
    );

    // A smaller $top is honoured; descending order; no nextLink when everything fits.
    let small: Value = list(
        &http,
        &sim,
        &token,
        &[("$top", "2"), ("$orderby", "updatedDateTime desc")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&small), ["r4", "r6"]);
    let few: Value = list(&http, &sim, &token, &[("$filter", "status eq 'Closed'")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&few).len(), 2);
    assert!(few.get("@odata.nextLink").is_none() && few.get("@odata.count").is_none());

    let tampered = http
        .get(format!(
            "{}/v1.0/referrals?$skiptoken=bm90LWEtdG9rZW4",
            sim.base_url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::BAD_REQUEST);
    assert_error_body(&tampered.json().await.unwrap(), "invalidRequest");
    let missing = http
        .get(format!("{}/v1.0/referrals", sim.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn when_update_times_tie_should_order_by_id() {
    let same = "2026-10-01T00:00:00Z";
    let stored = vec![
        referral("c", "Incoming", "New", "Pending", "Shared", same),
        referral(
            "a",
            "Incoming",
            "New",
            "Pending",
            "Shared",
            "2026-10-01T00:00:00.0000000Z",
        ),
        referral("b", "Incoming", "New", "Pending", "Shared", same),
    ];
    let sim = start(
        stored,
        SimConfig {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let mut page: Value = list(&http, &sim, &token, &[("$orderby", "updatedDateTime asc")])
        .await
        .json()
        .await
        .unwrap();
    let mut seen = ids(&page);
    while let Some(link) = page["@odata.nextLink"].as_str().map(str::to_owned) {
        page = http
            .get(&link)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(ids(&page));
    }
    assert_eq!(seen, ["a", "b", "c"]);
}

#[tokio::test]
async fn when_getting_and_patching_should_honour_if_match_and_prefer() {
    let sim = start(fixture(), SimConfig::default()).await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let url = format!("{}{REFERRALS}/r1", sim.base_url);

    let got = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["etag"], "\"etag-r1\"");
    assert_eq!(got.json::<Value>().await.unwrap(), fixture()[0]);

    let missing = http
        .get(format!("{}{REFERRALS}/nope", sim.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_error_body(&missing.json().await.unwrap(), "itemNotFound");

    let ops = json!([
        {"op": "replace", "path": "/status", "value": "Active"},
        {"op": "replace", "path": "/substatus", "value": "Accepted"},
        {"op": "replace", "path": "/details/dealValue", "value": 75000},
        {"op": "replace", "path": "/externalReferenceId", "value": "lead-42"},
    ]);
    let stale = http
        .patch(&url)
        .bearer_auth(&token)
        .header("If-Match", "\"old\"")
        .json(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_error_body(&stale.json().await.unwrap(), "preconditionFailed");
    assert_eq!(
        sim.sim.referrals()[0],
        fixture()[0],
        "a refused patch changes nothing"
    );

    let done = http
        .patch(&url)
        .bearer_auth(&token)
        .header("If-Match", "\"etag-r1\"")
        .json(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let new_etag = done.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, "\"etag-r1\"");
    let stored = sim.sim.referrals()[0].clone();
    assert_eq!(stored["status"], json!("Active"));
    assert_eq!(stored["substatus"], json!("Accepted"));
    assert_eq!(
        stored["details"],
        json!({"dealValue": 75000, "currency": "USD"})
    );
    assert_eq!(stored["externalReferenceId"], json!("lead-42"));
    assert_eq!(stored["eTag"], json!(new_etag));
    let updated =
        chrono::DateTime::parse_from_rfc3339(stored["updatedDateTime"].as_str().unwrap()).unwrap();
    assert!(
        updated > chrono::DateTime::parse_from_rfc3339("2026-10-05T10:00:00.1234567Z").unwrap()
    );

    // The old eTag is stale now; the new one (and no If-Match at all) work; Prefer returns the body.
    let again = http
        .patch(&url)
        .bearer_auth(&token)
        .header("If-Match", "\"etag-r1\"")
        .json(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    let representation = http
        .patch(&url)
        .bearer_auth(&token)
        .header("If-Match", &new_etag)
        .header("Prefer", "return=representation")
        .header("Content-Type", "application/json-patch+json")
        .body(json!([{"op": "add", "path": "/details/notes", "value": "called"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(representation.status(), StatusCode::OK);
    let body: Value = representation.json().await.unwrap();
    assert_eq!(body["details"]["notes"], json!("called"));
    assert_ne!(body["eTag"], json!(new_etag));
    let unconditional = http
        .patch(&url)
        .bearer_auth(&token)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(unconditional.status(), StatusCode::NO_CONTENT);

    for bad in [
        json!({"op": "replace"}),
        json!([{"op": "remove", "path": "/status"}]),
        json!([{"op": "replace", "path": "/id", "value": "x"}]),
    ] {
        let refused = http
            .patch(&url)
            .bearer_auth(&token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let unauthenticated = http.patch(&url).json(&ops).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn when_fail_next_is_queued_should_answer_those_statuses_then_serve() {
    let faults = Faults {
        fail_next: vec![429, 503, 500],
        retry_after_secs: 7,
        ..Default::default()
    };
    let sim = start(
        fixture(),
        SimConfig {
            faults,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();

    // Without a valid token the queue is not consumed.
    assert_eq!(
        list(&http, &sim, "forged", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let throttled = list(&http, &sim, &token, &[]).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "7");
    assert_error_body(&throttled.json().await.unwrap(), "serviceNotAvailable");
    let unavailable = list(&http, &sim, &token, &[]).await;
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()["retry-after"], "7");
    let failed = list(&http, &sim, &token, &[]).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(failed.headers().get("retry-after").is_none());
    assert_error_body(&failed.json().await.unwrap(), "generalException");
    assert_eq!(
        list(&http, &sim, &token, &[]).await.status(),
        StatusCode::OK
    );
    assert!(sim.sim.faults().fail_next.is_empty());

    let statuses: Vec<u16> = sim.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 429, 503, 500, 200]);

    // Control endpoint: faults over HTTP, including the token endpoint queue.
    let put = http
        .put(format!("{}/_sim/faults", sim.base_url))
        .json(&json!({"fail_next": [429], "token_fail_next": [503]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let token_fault = refresh(&http, &sim, DEFAULT_REFRESH_TOKEN).await;
    assert_eq!(token_fault.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(token_fault.headers()["retry-after"], "1");
    assert_eq!(
        refresh(&http, &sim, DEFAULT_REFRESH_TOKEN).await.status(),
        StatusCode::OK,
        "a failed call does not burn the token"
    );
    assert_eq!(
        list(&http, &sim, &token, &[]).await.headers()["retry-after"],
        "1"
    );
    let typo = http
        .put(format!("{}/_sim/faults", sim.base_url))
        .json(&json!({"eror_rate": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn when_random_faults_are_seeded_should_repeat_the_same_sequence() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let faults = Faults {
            error_rate: 0.3,
            throttle_rate: 0.2,
            ..Default::default()
        };
        let sim = start(
            fixture(),
            SimConfig {
                faults,
                rng_seed: seed,
                ..Default::default()
            },
        )
        .await;
        let http = reqwest::Client::new();
        let token = sim.sim.issue_access_token();
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(list(&http, &sim, &token, &[]).await.status().as_u16());
        }
        out
    }
    let a = statuses(11).await;
    assert_eq!(a, statuses(11).await);
    assert_ne!(a, statuses(12).await);
    for status in [200, 429, 500, 503] {
        assert!(a.contains(&status), "{status} in {a:?}");
    }
    assert!(a.iter().all(|s| [200, 429, 500, 503].contains(s)));
}

#[tokio::test]
async fn when_tokens_expire_after_pages_should_answer_401_until_renewed() {
    let faults = Faults {
        expire_token_after_pages: Some(2),
        ..Default::default()
    };
    let sim = start(
        fixture(),
        SimConfig {
            page_size: 2,
            faults,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let first: Value = list(&http, &sim, &token, &[]).await.json().await.unwrap();
    let second_link = first["@odata.nextLink"].as_str().unwrap();
    let second: Value = http
        .get(second_link)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let third_link = second["@odata.nextLink"].as_str().unwrap();
    let refused = http
        .get(third_link)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_error_body(&refused.json().await.unwrap(), "unauthenticated");

    let renewed: Value = refresh(&http, &sim, DEFAULT_REFRESH_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let renewed = renewed["access_token"].as_str().unwrap();
    let third = http
        .get(third_link)
        .bearer_auth(renewed)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(ids(&third.json().await.unwrap()).len(), 2);
}

#[tokio::test]
async fn when_referrals_are_malformed_should_serve_them_as_given() {
    let malformed = vec![
        json!({"name": "no id at all", "updatedDateTime": "2026-10-01T00:00:00Z"}),
        json!({"id": "odd", "status": 7, "customerProfile": {"ids": {}}, "updatedDateTime": "yesterday"}),
        json!({"id": 12345, "direction": "Incoming"}),
    ];
    let sim = start(malformed.clone(), SimConfig::default()).await;
    let http = reqwest::Client::new();
    let token = sim.sim.issue_access_token();
    let page: Value = list(&http, &sim, &token, &[]).await.json().await.unwrap();
    assert_eq!(page["value"], json!(malformed));
    let ordered: Value = list(&http, &sim, &token, &[("$orderby", "updatedDateTime desc")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ordered["value"].as_array().unwrap().len(), 3);
    let filtered: Value = list(&http, &sim, &token, &[("$filter", "status eq 'New'")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["value"], json!([]));

    // Upsert over HTTP: replaces by id, appends the rest.
    let upsert = http
        .post(format!("{}/_sim/referrals", sim.base_url))
        .json(&json!([{"id": "odd", "status": "New"}, {"id": "new-one"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(upsert.status(), StatusCode::OK);
    assert_eq!(upsert.json::<Value>().await.unwrap()["total"], json!(4));
    assert_eq!(
        sim.sim.referrals()[1],
        json!({"id": "odd", "status": "New"})
    );
    let by_number = http
        .get(format!("{}{REFERRALS}/12345", sim.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_number.status(), StatusCode::OK);
    let not_array = http
        .post(format!("{}/_sim/referrals", sim.base_url))
        .json(&json!({"id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_array.status(), StatusCode::BAD_REQUEST);
    let log: Vec<Value> = http
        .get(format!("{}/_sim/requests", sim.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0]["auth_ok"], json!(true));
}

/// The token and a save counter as its version.
#[derive(Default)]
struct MemoryTokens(std::sync::Mutex<Option<(Secret, u64)>>);

#[async_trait::async_trait]
impl RefreshTokenStore for MemoryTokens {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .as_ref()
            .map(|(token, version)| StoredRefreshToken {
                token: token.clone(),
                version: TokenVersion(version.to_string()),
            }))
    }

    async fn save(
        &self,
        token: &Secret,
        expected: Option<&TokenVersion>,
    ) -> Result<TokenVersion, StoreError> {
        let mut stored = self.0.lock().unwrap();
        let version = stored.as_ref().map(|(_, v)| *v);
        if version.map(|v| TokenVersion(v.to_string())).as_ref() != expected {
            return Err(StoreError::Conflict("moved".to_owned()));
        }
        let next = version.unwrap_or(0) + 1;
        *stored = Some((token.clone(), next));
        Ok(TokenVersion(next.to_string()))
    }
}

/// The real client against the simulator: rotation, nextLink on another path, 429, expiring tokens.
#[tokio::test]
async fn when_the_hunter_client_syncs_should_get_every_referral_through_the_faults() {
    let referrals = generate_referrals(23, 5);
    let faults = Faults {
        fail_next: vec![429, 200, 503],
        retry_after_secs: 0,
        expire_token_after_pages: Some(2),
        ..Default::default()
    };
    let sim = start(
        referrals.clone(),
        SimConfig {
            page_size: 4,
            faults,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let store = Arc::new(MemoryTokens::default());
    let auth = PartnerCenterAuth::new(
        TokenEndpoint::new(
            http.clone(),
            &sim.token_url,
            "sim-client",
            Secret::default(),
        ),
        Secret::new(DEFAULT_REFRESH_TOKEN),
        store.clone(),
    );
    let backoff = Backoff {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_retries: 4,
    };
    let client = PartnerCenterClient::new(http, &sim.base_url, auth, backoff).unwrap();
    let filter = ReferralFilter {
        page_size: 200,
        ..Default::default()
    };
    let mut page = client.first_page(&filter, None).await.unwrap();
    let mut got = page.referrals.clone();
    while let Some(link) = page.next_link.clone() {
        page = client.next_page(&link, None).await.unwrap();
        got.extend(page.referrals.clone());
    }
    assert_eq!(got.len(), referrals.len());
    let want: BTreeSet<String> = referrals.iter().map(Value::to_string).collect();
    assert_eq!(
        got.iter()
            .map(|r| serde_json::from_str::<Value>(r.get()).unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        want
    );
    let log = sim.sim.requests();
    assert!(log.iter().any(|r| r.status == 429) && log.iter().any(|r| r.status == 503));
    assert!(
        log.iter().filter(|r| r.status == 401).count() >= 2,
        "tokens expired every two pages"
    );
    assert_eq!(
        store.load().await.unwrap().unwrap().token.expose(),
        sim.sim.current_refresh_token()
    );

    let watermark = ReferralFilter {
        directions: vec!["Incoming".into()],
        statuses: vec!["New".into(), "Active".into()],
        updated_since: Some(
            chrono::DateTime::from_timestamp(SEED_EPOCH_UNIX - 30 * 86_400, 0).unwrap(),
        ),
        page_size: 200,
    };
    let first = client.first_page(&watermark, None).await.unwrap();
    assert!(!first.referrals.is_empty());
    assert!(first.referrals.iter().all(|r| {
        let r: Value = serde_json::from_str(r.get()).unwrap();
        r["direction"] == "Incoming" && (r["status"] == "New" || r["status"] == "Active")
    }));
}

#[test]
fn when_seeding_twice_with_the_same_seed_should_be_identical() {
    assert_eq!(generate_referrals(60, 7), generate_referrals(60, 7));
    assert_ne!(generate_referrals(60, 7), generate_referrals(60, 8));
    assert!(generate_referrals(0, 7).is_empty());
    assert_eq!(generate_referrals(5, 7), generate_referrals(60, 7)[..5]);
}

#[test]
fn when_seeding_should_cover_every_status_and_skip_reason() {
    let rules = Rules::embedded();
    let referrals = generate_referrals(16, 99);
    let mut outcomes = BTreeSet::new();
    let mut sources = BTreeSet::new();
    let mut domains: HashMap<String, usize> = HashMap::new();
    for raw in &referrals {
        let Ok(referral) = parse_referral_value(raw.clone()) else {
            outcomes.insert(Eligibility::Skipped(SkipReason::InvalidPayload).skip_reason());
            continue;
        };
        let extracted = extract_domain(&referral, rules);
        if let Some(found) = &extracted {
            sources.insert(found.source.as_str());
            *domains.entry(found.domain.as_str().to_owned()).or_default() += 1;
        }
        outcomes.insert(
            eligibility(&referral, extracted.as_ref().map(|e| &e.domain), rules).skip_reason(),
        );
    }
    let mut expected: BTreeSet<Option<SkipReason>> =
        SkipReason::ALL.into_iter().map(Some).collect();
    expected.insert(None);
    assert_eq!(
        outcomes, expected,
        "eligible plus every skip reason in the first 16"
    );
    for source in [
        DomainSource::CustomerEmail,
        DomainSource::ExternalId,
        DomainSource::Website,
    ] {
        assert!(sources.contains(source.as_str()), "{source:?}");
    }
    assert!(
        domains.keys().any(|d| d.starts_with("xn--")),
        "an IDN domain: {domains:?}"
    );
    assert!(
        domains.get("contoso.com").is_some_and(|&n| n >= 3),
        "referrals share a domain: {domains:?}"
    );
}

#[test]
fn when_seeding_many_should_vary_like_real_data() {
    let referrals = generate_referrals(200, 2026);
    let field = |r: &Value, f: &str| r[f].as_str().unwrap_or_default().to_owned();
    let combos: BTreeSet<(String, String)> = referrals
        .iter()
        .map(|r| (field(r, "status"), field(r, "substatus")))
        .collect();
    for combo in [
        ("New", "Pending"),
        ("New", "Received"),
        ("Active", "Accepted"),
        ("Closed", "Won"),
        ("Closed", "Lost"),
        ("Closed", "Declined"),
        ("Closed", "Expired"),
    ] {
        assert!(
            combos.contains(&(combo.0.into(), combo.1.into())),
            "{combo:?}"
        );
    }
    let outgoing = referrals
        .iter()
        .filter(|r| r["direction"] == "Outgoing")
        .count();
    assert!(
        outgoing > 0 && outgoing < referrals.len() / 3,
        "mostly Incoming, some Outgoing: {outgoing}"
    );
    let ids: BTreeSet<String> = referrals
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        referrals.len() - 1,
        "unique ids, one referral deliberately without one"
    );
    assert!(
        referrals
            .iter()
            .all(|r| r["type"] == "Shared" || r["type"] == "Independent")
    );

    let consumer = [
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "yahoo.com",
        "icloud.com",
        "gmx.de",
        "web.de",
        "yahoo.co.uk",
        "proton.me",
        "hotmail.fr",
        "live.com",
        "googlemail.com",
    ];
    let emails = |r: &Value| -> Vec<String> {
        r["customerProfile"]["team"]
            .as_array()
            .map(|team| {
                team.iter()
                    .filter_map(|c| c["email"].as_str().map(|e| e.trim().to_lowercase()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let consumer_only = referrals
        .iter()
        .filter(|r| {
            let e = emails(r);
            !e.is_empty()
                && e.iter()
                    .all(|e| consumer.iter().any(|c| e.ends_with(&format!("@{c}"))))
        })
        .count();
    assert!(consumer_only > 0);
    // Many customers, some with several referrals.
    let mut by_domain: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &referrals {
        let domains: BTreeSet<String> = emails(r)
            .iter()
            .filter_map(|e| e.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .filter(|d| !consumer.contains(&d.as_str()))
            .collect();
        for domain in domains {
            *by_domain.entry(domain).or_default() += 1;
        }
    }
    assert!(by_domain.len() > 40, "{} customer domains", by_domain.len());
    assert!(by_domain.values().any(|&n| n >= 3), "{by_domain:?}");
    assert!(
        referrals
            .iter()
            .any(|r| emails(r).iter().any(|e| !e.is_ascii())),
        "IDN e-mail domains"
    );
    assert!(
        referrals.iter().any(|r| emails(r).len() >= 2),
        "several contacts"
    );
    assert!(
        referrals
            .iter()
            .any(|r| r["customerProfile"]["ids"].is_object()),
        "ids as {{}}"
    );
    assert!(
        referrals
            .iter()
            .any(|r| r["customerProfile"]["ids"].is_array())
    );
    // The partner's own people are in the top-level team, never customers.
    assert!(
        referrals
            .iter()
            .all(|r| r["team"]
                .as_array()
                .is_some_and(|t| t.iter().all(|p| p["email"].as_str().is_some_and(|e| e
                    .ends_with("@ridgeline-partners.com")
                    || e.ends_with("@microsoft.com")))))
    );

    let mut seven_digits = 0;
    for r in &referrals {
        let created = chrono::DateTime::parse_from_rfc3339(r["createdDateTime"].as_str().unwrap())
            .unwrap()
            .timestamp();
        let updated_text = r["updatedDateTime"].as_str().unwrap();
        let updated = chrono::DateTime::parse_from_rfc3339(updated_text)
            .unwrap()
            .timestamp();
        assert!(created <= updated && updated <= SEED_EPOCH_UNIX, "{r}");
        assert!(created >= SEED_EPOCH_UNIX - 91 * 86_400);
        if updated_text.split('.').nth(1).is_some_and(|f| f.len() == 8) {
            seven_digits += 1;
        }
        assert!(
            r["eTag"]
                .as_str()
                .is_some_and(|e| e.starts_with('"') && e.ends_with('"'))
        );
    }
    assert!(
        seven_digits > 0 && seven_digits < referrals.len(),
        "fractions vary: {seven_digits}"
    );
}

#[test]
fn when_loading_a_referrals_file_should_read_arrays_and_explain_anything_else() {
    let dir = std::env::temp_dir().join(format!("hunter-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    let referrals = generate_referrals(4, 1);
    std::fs::write(&good, serde_json::to_string_pretty(&referrals).unwrap()).unwrap();
    assert_eq!(load_referrals_file(&good).unwrap(), referrals);

    let page = dir.join("page.json");
    std::fs::write(&page, r#"{"value": []}"#).unwrap();
    let error = load_referrals_file(&page).unwrap_err().to_string();
    assert!(
        error.contains("JSON array") && error.contains("page.json"),
        "{error}"
    );
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "[{").unwrap();
    assert!(
        load_referrals_file(&broken)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON")
    );
    assert!(
        load_referrals_file(&dir.join("absent.json"))
            .unwrap_err()
            .to_string()
            .contains("cannot read")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
