//! Every route of the API as its OpenAPI document lists it: the document itself, auth on each
//! route, the referral and sync-run lists with their filters and pages, the counts, the CSV
//! export, the Dynamics routes, and the answers to what no route takes (404, 405, CORS).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_api::{ApiState, router};
use hunter_domain::model::Lead;
use hunter_domain::rules::normalize_domain;
use lambda_http::tower::ServiceExt as _;
use serde_json::Value;

use crate::{RecordingTrigger, TOKEN, all, call, get, state, synced_stack};

async fn raw(
    state: &ApiState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Every `(method, path)` the document lists, with `{domain}`/`{id}` filled in.
fn operations(document: &Value, domain: &str, id: &str) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = path.replace("{domain}", domain).replace("{id}", id);
            operations.push((method.to_uppercase(), path));
        }
    }
    operations
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_every_route_but_health_needs_a_token() {
    let stack = synced_stack("20").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let document = get(&state, "/api/v1/openapi.json").await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "/api/v1/health",
        "/api/v1/openapi.json",
        "/api/v1/referrals",
        "/api/v1/referrals/{id}",
        "/api/v1/leads",
        "/api/v1/leads/export.csv",
        "/api/v1/leads/{domain}",
        "/api/v1/leads/{domain}/rescan",
        "/api/v1/scan",
        "/api/v1/stats",
        "/api/v1/sync",
        "/api/v1/sync-runs",
        "/api/v1/dynamics/sync/{domain}",
        "/api/v1/dynamics/bulk-sync",
        "/api/v1/dynamics/status/{domain}",
        "/api/v1/webhooks",
        "/api/v1/webhooks/partner-center",
    ];
    assert_eq!(
        paths,
        expected.into_iter().collect(),
        "the routes of DESIGN.md"
    );
    // Every schema a route refers to is in the document.
    let text = document.to_string();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }

    let lead = get(&state, "/api/v1/leads?limit=1").await["items"][0]["domain"]
        .as_str()
        .unwrap()
        .to_owned();
    let referral = get(&state, "/api/v1/referrals?limit=1").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in operations(&document, &lead, &referral) {
        // The route exists: with the token it is not a 404 or 405.
        let with_token = Request::builder()
            .method(method.as_str())
            .uri(&path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"domain": "contoso.com"}"#))
            .unwrap();
        let (status, _, body) = raw(&state, with_token).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {body}"
        );
        let without = Request::builder()
            .method(method.as_str())
            .uri(&path)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = raw(&state, without).await;
        if path == "/api/v1/health" {
            assert_eq!(status, StatusCode::OK, "health stays open");
            continue;
        }
        if path == "/api/v1/webhooks/partner-center" {
            // No bearer token: Partner Center signs its events instead.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"]["code"], "invalid_signature");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "unauthorized", "{method} {path}");
    }
}

#[tokio::test]
async fn what_no_route_takes_is_answered_in_the_error_envelope() {
    let stack = synced_stack("3").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let (status, body) = call(&state, "DELETE", "/api/v1/leads", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, body) = call(&state, "GET", "/api/v1/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = call(&state, "GET", "/api/v1/referrals/no-such-referral", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    for uri in [
        "/api/v1/referrals?limit=abc",
        "/api/v1/referrals?eligible=maybe",
        "/api/v1/referrals?skipReason=no_reason",
        "/api/v1/referrals?cursor=not-ours",
        "/api/v1/sync-runs?limit=-1",
        "/api/v1/sync-runs?cursor=%7B%7D",
        "/api/v1/leads/export.csv?minScore=high",
        "/api/v1/dynamics/status/not%20a%20domain",
        "/api/v1/dynamics/sync/localhost",
    ] {
        let method = if uri.contains("/dynamics/sync/") {
            "POST"
        } else {
            "GET"
        };
        let (status, body) = call(&state, method, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let huge = serde_json::json!({"domain": "x".repeat(3 * 1024 * 1024)});
    let (status, body) = call(&state, "POST", "/api/v1/scan", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn referrals_filter_and_page_without_repeating_or_skipping_any() {
    let stack = synced_stack("90").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let every = all(&state, "/api/v1/referrals?limit=200").await;
    assert_eq!(every.len(), 90);
    let paged = all(&state, "/api/v1/referrals?limit=7").await;
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&paged),
        ids(&every),
        "pages of 7 list the same, in the same order"
    );
    let created: Vec<&str> = every
        .iter()
        .filter_map(|r| r["createdDateTime"].as_str())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let eligible = all(&state, "/api/v1/referrals?eligible=true&limit=50").await;
    let skipped = all(&state, "/api/v1/referrals?eligible=false&limit=50").await;
    assert!(eligible.iter().all(|r| r["eligible"] == true));
    assert!(
        skipped
            .iter()
            .all(|r| r["eligible"] == false && r["skipReason"].is_string())
    );
    assert_eq!(eligible.len() + skipped.len(), every.len());
    let reason = skipped[0]["skipReason"].as_str().unwrap().to_owned();
    let with_reason = all(
        &state,
        &format!("/api/v1/referrals?skipReason={reason}&limit=50"),
    )
    .await;
    assert_eq!(
        with_reason.len(),
        skipped
            .iter()
            .filter(|r| r["skipReason"] == reason.as_str())
            .count()
    );
    let status = every[0]["status"].as_str().unwrap().to_owned();
    let by_status = all(
        &state,
        &format!("/api/v1/referrals?status={status}&limit=50"),
    )
    .await;
    assert!(!by_status.is_empty() && by_status.iter().all(|r| r["status"] == status.as_str()));
    let substatus = every[0]["substatus"].as_str().unwrap().to_owned();
    let by_substatus = all(
        &state,
        &format!("/api/v1/referrals?substatus={substatus}&limit=50"),
    )
    .await;
    assert!(
        by_substatus
            .iter()
            .all(|r| r["substatus"] == substatus.as_str())
    );
    let customer = every
        .iter()
        .find_map(|r| r["customerName"].as_str())
        .unwrap()
        .to_owned();
    let found = all(
        &state,
        &format!(
            "/api/v1/referrals?q={}&limit=50",
            customer.to_lowercase().replace(' ', "%20")
        ),
    )
    .await;
    assert!(found.iter().any(|r| r["customerName"] == customer.as_str()));
    assert!(
        every.iter().all(|r| r.get("raw").is_none()),
        "lists leave raw out"
    );

    let one = get(
        &state,
        &format!("/api/v1/referrals/{}", every[0]["id"].as_str().unwrap()),
    )
    .await;
    let raw: Value = serde_json::from_str(one["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["id"], every[0]["id"], "the payload as received");
}

#[tokio::test]
async fn stats_count_every_lead_exactly_and_name_each_category() {
    let stack = synced_stack("150").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let leads = all(&state, "/api/v1/leads?limit=200").await;
    let stats = get(&state, "/api/v1/stats").await;
    assert_eq!(stats["leads"].as_u64().unwrap(), leads.len() as u64);
    let count =
        |field: &str, value: &str| leads.iter().filter(|l| l[field] == value).count() as u64;
    for (segment, n) in stats["segments"].as_object().unwrap() {
        assert_eq!(n.as_u64().unwrap(), count("segment", segment), "{segment}");
    }
    for (category, n) in stats["priorityCategories"].as_object().unwrap() {
        assert_eq!(
            n.as_u64().unwrap(),
            count("priorityCategory", category),
            "{category}"
        );
    }
    assert_eq!(
        stats["syncStatuses"]["pending"].as_u64().unwrap(),
        leads.len() as u64
    );
    let categories = stats["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 6);
    assert_eq!(categories[0]["category"], "P1");
    assert_eq!(categories[0]["label"], "High Potential Greenfield");
    assert_eq!(categories[0]["sellerAction"], "act within 48 h");
    let labelled = leads.iter().find(|l| l["priorityCategory"] == "P1");
    if let Some(lead) = labelled {
        assert_eq!(lead["priorityCategoryLabel"], "High Potential Greenfield");
    }
}

#[tokio::test]
async fn the_csv_export_lists_the_filtered_leads_in_order_with_formula_cells_neutralised() {
    let stack = synced_stack("120").await;
    // A company whose name a spreadsheet would run as a formula.
    let mut hostile = Lead::new(
        normalize_domain("formula-corp.com").unwrap(),
        chrono::Utc::now(),
    );
    hostile.company_name = Some("=HYPERLINK(\"http://evil.example\",\"click\")".to_owned());
    hostile.score = Some(99);
    hostile.last_error = Some("+cmd|' /C calc'!A0".to_owned());
    stack.store.put_lead(&hostile, None, None).await.unwrap();
    let state = state(&stack, Arc::new(RecordingTrigger::default()));

    let request = |uri: &str| {
        Request::get(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, csv) = raw(&state, request("/api/v1/leads/export.csv")).await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"hunter-leads-")
    );
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&header[..3], ["domain", "companyName", "provider"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let listed = all(&state, "/api/v1/leads?limit=13").await;
    let domains: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    let expected: Vec<&str> = listed
        .iter()
        .map(|l| l["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        domains, expected,
        "every lead, in the list's order, across its pages"
    );
    let formula = rows.iter().find(|r| &r[0] == "formula-corp.com").unwrap();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(
        &formula[column("companyName")],
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(&formula[column("lastError")], "'+cmd|' /C calc'!A0");
    assert_eq!(&formula[column("score")], "99");

    let (_, _, filtered) = raw(
        &state,
        request("/api/v1/leads/export.csv?segment=Migration&sort=domain&limit=1&cursor=ignored"),
    )
    .await;
    let migration: Vec<String> = csv::Reader::from_reader(filtered.as_bytes())
        .records()
        .map(|r| r.unwrap()[0].to_owned())
        .collect();
    let expected: Vec<String> = all(
        &state,
        "/api/v1/leads?segment=Migration&sort=domain&limit=200",
    )
    .await
    .iter()
    .map(|l| l["domain"].as_str().unwrap().to_owned())
    .collect();
    assert!(!expected.is_empty());
    assert_eq!(migration, expected, "the same filter and order as the list");
}

#[tokio::test]
async fn the_dynamics_routes_queue_pushes_and_tell_where_a_lead_stands() {
    let stack = synced_stack("40").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let domain = get(&state, "/api/v1/leads?limit=1").await["items"][0]["domain"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = stack.push_queue.depth().await.unwrap().visible;
    let (status, body) = call(
        &state,
        "POST",
        &format!("/api/v1/dynamics/sync/{domain}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["queued"], true);
    assert_eq!(stack.push_queue.depth().await.unwrap().visible, before + 1);
    let (status, body) = call(
        &state,
        "POST",
        "/api/v1/dynamics/sync/unknown-company.com",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let status_of = get(
        &state,
        &format!("/api/v1/dynamics/status/{}", domain.to_uppercase()),
    )
    .await;
    assert_eq!(
        status_of["domain"],
        domain.as_str(),
        "domains are matched in any case"
    );
    assert_eq!(status_of["syncStatus"], "pending");
    assert!(status_of["audit"].is_array());

    let leads = get(&state, "/api/v1/stats").await["leads"]
        .as_u64()
        .unwrap();
    let (status, body) = call(&state, "POST", "/api/v1/dynamics/bulk-sync", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["queued"].as_u64().unwrap(),
        leads,
        "every lead is pending"
    );
}

#[tokio::test]
async fn health_shows_queues_and_the_last_sync_only_to_token_holders() {
    let stack = synced_stack("10").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let health = get(&state, "/api/v1/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queues"]["referrals"]["deadLetters"], 0);
    assert!(health["queues"]["dynamicsPush"]["visible"].is_u64());
    assert_eq!(health["lastSync"]["status"], "succeeded");
    assert_eq!(health["lastSync"]["fetched"], 10);
    let (status, headers, open) = raw(
        &state,
        Request::get("/api/v1/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["cache-control"], "no-store",
        "no cache keeps an answer"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&open).unwrap(),
        serde_json::json!({"status": "ok"})
    );
}

#[tokio::test]
async fn browsers_may_call_the_api_only_from_the_configured_ui_origin() {
    let stack = synced_stack("3").await;
    let mut state = state(&stack, Arc::new(RecordingTrigger::default()));
    state.ui_origins = vec!["https://hunter.example.com/".to_owned()];
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/leads")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, _) = raw(&state, preflight("https://hunter.example.com")).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://hunter.example.com"
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let (_, headers, _) = raw(&state, preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());

    let from = |origin: &str| {
        Request::get("/api/v1/stats")
            .header("origin", origin)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = raw(&state, from("https://hunter.example.com")).await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://hunter.example.com"
    );
    let (_, headers, _) = raw(&state, from("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());

    // Without configured origins (hunter-local: the UI is on the API's origin), no CORS at all.
    state.ui_origins.clear();
    let (_, headers, _) = raw(&state, from("https://hunter.example.com")).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

/// A push queue that takes nothing: every entry is refused for a passing reason.
struct RefusingQueue;

#[async_trait::async_trait]
impl hunter_core::ports::Queue for RefusingQueue {
    async fn send_batch(
        &self,
        messages: &[hunter_core::ports::OutgoingMessage],
    ) -> Result<Vec<hunter_core::ports::SendFailure>, hunter_core::ports::QueueError> {
        Ok(messages
            .iter()
            .map(|m| hunter_core::ports::SendFailure {
                id: m.id.clone(),
                code: "InternalError".into(),
                message: "try again".into(),
                sender_fault: false,
            })
            .collect())
    }
    async fn receive(
        &self,
        _: usize,
        _: Option<std::time::Duration>,
        _: std::time::Duration,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &str) -> Result<(), hunter_core::ports::QueueError> {
        Ok(())
    }
    async fn change_visibility(
        &self,
        _: &str,
        _: std::time::Duration,
    ) -> Result<(), hunter_core::ports::QueueError> {
        Ok(())
    }
    async fn depth(
        &self,
    ) -> Result<hunter_core::ports::QueueDepth, hunter_core::ports::QueueError> {
        Ok(hunter_core::ports::QueueDepth::default())
    }
    async fn peek_dead_letters(
        &self,
        _: usize,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        Ok(Vec::new())
    }
    async fn take_dead_letters(
        &self,
        _: usize,
    ) -> Result<Vec<hunter_core::ports::ReceivedMessage>, hunter_core::ports::QueueError> {
        Ok(Vec::new())
    }
    async fn redrive_dead_letters(&self) -> Result<usize, hunter_core::ports::QueueError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_push_the_queue_did_not_take_is_not_answered_as_queued() {
    let stack = synced_stack("10").await;
    let state = ApiState {
        push_queue: Arc::new(RefusingQueue),
        ..state(&stack, Arc::new(RecordingTrigger::default()))
    };
    let domain = get(&state, "/api/v1/leads?limit=1").await["items"][0]["domain"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = call(
        &state,
        "POST",
        &format!("/api/v1/dynamics/sync/{domain}"),
        None,
    )
    .await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "queue_unavailable");
    let (status, body) = call(&state, "POST", "/api/v1/dynamics/bulk-sync", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
