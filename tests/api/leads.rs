//! The lead routes over a synced stack whose leads were scanned by hunter-local's DNS server:
//! filters, orders and pages of `GET /leads`, one lead in full, a rescan, a scan on demand, and
//! every bad parameter answered 400 with the JSON error envelope.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_api::router;
use lambda_http::tower::ServiceExt as _;
use serde_json::{Value, json};

use crate::{RecordingTrigger, all, call, get, state, synced_stack};

fn scores(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|l| l["score"].as_i64().unwrap_or(-1))
        .collect()
}

#[tokio::test]
async fn leads_list_scored_filtered_sorted_and_paged() {
    let stack = synced_stack("120").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));

    let leads = all(&state, "/api/v1/leads?limit=7").await;
    assert!(leads.len() > 10, "{}", leads.len());
    let by_score = scores(&leads);
    assert!(
        by_score.windows(2).all(|w| w[0] >= w[1]),
        "highest first: {by_score:?}"
    );
    let mut domains: Vec<&str> = leads
        .iter()
        .map(|l| l["domain"].as_str().unwrap())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    assert_eq!(
        domains.len(),
        leads.len(),
        "pages neither repeat nor skip a lead"
    );
    for lead in &leads {
        assert!(
            lead["score"].is_u64() && lead["scanState"].is_string(),
            "{lead}"
        );
        assert!(
            lead.get("scoreBreakdown").is_none(),
            "lists leave the breakdown out"
        );
    }

    let ascending = scores(&all(&state, "/api/v1/leads?sort=-score&limit=9").await);
    assert!(ascending.windows(2).all(|w| w[0] <= w[1]), "{ascending:?}");
    let named: Vec<String> = all(&state, "/api/v1/leads?sort=domain&limit=9")
        .await
        .iter()
        .map(|l| l["domain"].as_str().unwrap().to_owned())
        .collect();
    assert!(named.windows(2).all(|w| w[0] <= w[1]), "{named:?}");
    assert_eq!(named.len(), leads.len());

    let migration = all(&state, "/api/v1/leads?segment=Migration&limit=50").await;
    assert!(!migration.is_empty());
    assert!(migration.iter().all(|l| l["segment"] == "Migration"));
    let google = all(&state, "/api/v1/leads?provider=Google&minScore=60&limit=50").await;
    assert!(
        google
            .iter()
            .all(|l| l["provider"] == "Google" && l["score"].as_u64().unwrap() >= 60)
    );
    let hot = all(&state, "/api/v1/leads?priorityCategory=P1,P2&limit=50").await;
    assert!(!hot.is_empty());
    assert!(
        hot.iter()
            .all(|l| l["priorityCategory"] == "P1" || l["priorityCategory"] == "P2")
    );
    assert_eq!(
        hot.len(),
        leads
            .iter()
            .filter(|l| l["priorityCategory"] == "P1" || l["priorityCategory"] == "P2")
            .count()
    );
    let unscanned = all(&state, "/api/v1/leads?scanState=timeout&limit=50").await;
    assert!(unscanned.is_empty(), "no fault without --sim-dns-faults");
    let pending = all(&state, "/api/v1/leads?syncStatus=pending&limit=50").await;
    assert_eq!(
        pending.len(),
        leads.len(),
        "--no-dynamics leaves every lead pending"
    );
    let some = leads[0]["domain"].as_str().unwrap();
    let found = all(
        &state,
        &format!("/api/v1/leads?q={}&limit=50", some.to_uppercase()),
    )
    .await;
    assert!(found.iter().any(|l| l["domain"] == some));
}

#[tokio::test]
async fn a_lead_shows_its_breakdown_signals_referrals_sync_state_and_audit() {
    let stack = synced_stack("60").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let top = get(&state, "/api/v1/leads?limit=1").await["items"][0].clone();
    let domain = top["domain"].as_str().unwrap();

    let lead = get(&state, &format!("/api/v1/leads/{domain}")).await;

    let breakdown = lead["scoreBreakdown"].as_array().unwrap();
    let sum: i64 = breakdown
        .iter()
        .map(|l| l["points"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, lead["score"].as_i64().unwrap(), "{lead}");
    assert!(breakdown.iter().all(|l| l["label"].is_string()));
    assert!(lead["signals"]["mx"].is_array(), "{lead}");
    assert!(lead["priorityCategory"].is_string() && lead["commercialSegment"].is_string());
    let referrals = lead["referrals"].as_array().unwrap();
    assert_eq!(
        referrals.len() as u64,
        lead["referralCount"].as_u64().unwrap()
    );
    assert!(referrals.iter().all(|r| r["id"].is_string()));
    assert_eq!(lead["syncStatus"], "pending");
    assert!(lead["audit"].is_array());
    assert!(lead.get("scanClaimedAt").is_none());

    let (status, missing) = call(&state, "GET", "/api/v1/leads/nobody-here-at-all.com", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_rescan_scores_the_lead_again_and_a_scan_on_demand_creates_no_lead() {
    let stack = synced_stack("40").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    let domain = get(&state, "/api/v1/leads?limit=1").await["items"][0]["domain"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = get(&state, &format!("/api/v1/leads/{domain}")).await;

    let (status, rescanned) = call(
        &state,
        "POST",
        &format!("/api/v1/leads/{domain}/rescan"),
        None,
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{rescanned}");
    assert_eq!(rescanned["scan"]["state"], "ok");
    assert_eq!(
        rescanned["changed"], false,
        "the same DNS, the same judgement"
    );
    assert_eq!(rescanned["lead"]["score"], before["score"]);
    let after = get(&state, &format!("/api/v1/leads/{domain}")).await;
    assert!(after["scannedAt"].as_str() > before["scannedAt"].as_str());

    let leads_before = all(&state, "/api/v1/leads?limit=200").await.len();
    let (status, scanned) = call(
        &state,
        "POST",
        "/api/v1/scan",
        Some(json!({"domain": format!("https://www.{domain}/about")})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{scanned}");
    assert_eq!(scanned["domain"], domain.as_str());
    assert_eq!(scanned["assessment"]["score"], before["score"]);
    assert!(scanned["assessment"]["breakdown"].is_array());
    let (status, unknown) = call(
        &state,
        "POST",
        "/api/v1/scan",
        Some(json!({"domain": "not-seeded.example.org"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        unknown["scan"]["state"], "servfail",
        "the built-in server holds no such zone"
    );
    assert!(unknown["assessment"].is_null());
    assert_eq!(
        all(&state, "/api/v1/leads?limit=200").await.len(),
        leads_before
    );
}

#[tokio::test]
async fn bad_lead_parameters_are_answered_400_with_the_error_envelope() {
    let stack = synced_stack("5").await;
    let state = state(&stack, Arc::new(RecordingTrigger::default()));
    for uri in [
        "/api/v1/leads?segment=Nope",
        "/api/v1/leads?minScore=abc",
        "/api/v1/leads?minScore=101",
        "/api/v1/leads?syncStatus=done",
        "/api/v1/leads?scanState=maybe",
        "/api/v1/leads?sort=size",
        "/api/v1/leads?priorityCategory=P7",
        "/api/v1/leads?priorityCategory=P1,,P2",
        "/api/v1/leads?limit=0",
        "/api/v1/leads?limit=abc",
        "/api/v1/leads?cursor=%21%21%21",
        "/api/v1/leads/127.0.0.1",
    ] {
        let (status, body) = call(&state, "GET", uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    for body in [
        None,
        Some(json!({"name": "x"})),
        Some(json!({"domain": "localhost"})),
    ] {
        let (status, answer) = call(&state, "POST", "/api/v1/scan", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
    }
    let unauthorized = router(state.clone())
        .oneshot(Request::get("/api/v1/leads").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
}
