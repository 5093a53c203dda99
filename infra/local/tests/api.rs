//! hunter-local's minimal /api/v1 over HTTP: auth, referrals, sync runs, sync requests and the
//! Dynamics push endpoints.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use clap::Parser;
use http_api::router;
use hunter_core::ports::LeadQuery;
use hunter_core::secret::Secret;
use hunter_local::cli::Args;
use hunter_local::stack::Stack;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn the_api_answers_with_a_token_and_queues_syncs_and_pushes() {
    let stack = Arc::new(
        Stack::build(&Args::parse_from([
            "hunter-local",
            "--in-memory",
            "--once",
            "--seed",
            "40",
        ]))
        .await
        .unwrap(),
    );
    hunter_local::run_once(&stack).await.unwrap();
    let (sync_requests, _requested) = tokio::sync::mpsc::channel(1);
    let state = hunter_local::api_state(&stack, Secret::new("t0k"), sync_requests);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth("t0k").send();
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth("t0k").send();

    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let refused = http.get(format!("{base}/referrals")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(format!("{base}/referrals"))
        .bearer_auth("t0K")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let page: Value = get("/referrals?eligible=true&limit=5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["eligible"] == true && r.get("raw").is_none())
    );
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let one: Value = get(&format!("/referrals/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(one["raw"].as_str().unwrap().contains(&id));
    assert_eq!(
        get("/referrals/nope").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/referrals?skipReason=bogus").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let runs: Value = get("/sync-runs").await.unwrap().json().await.unwrap();
    assert_eq!(runs["items"][0]["status"], "succeeded");

    let lead = stack
        .store
        .list_leads(&LeadQuery::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let status: Value = get(&format!("/dynamics/status/{}", lead.domain))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["syncStatus"], "synced");
    // One push of the lead (its accepted referrals' opportunities are audited beside it).
    let pushes = |status: &Value| {
        status["audit"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "upsert" || e["action"] == "adopt")
            .count()
    };
    assert_eq!(pushes(&status), 1, "{status}");

    // A person asks for a push of a synced lead: it is pushed again.
    assert_eq!(
        post(&format!("/dynamics/sync/{}", lead.domain))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    hunter_local::worker::drain_pushes(&stack).await.unwrap();
    let status: Value = get(&format!("/dynamics/status/{}", lead.domain))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pushes(&status), 2, "{status}");
    assert_eq!(status["syncAttempts"], 2);
    assert_eq!(
        post("/dynamics/sync/unknown-company.com")
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post("/dynamics/sync/127.0.0.1").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let bulk: Value = post("/dynamics/bulk-sync")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["queued"], 0, "every lead is synced");

    let accepted = post("/sync").await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let body: Value = accepted.json().await.unwrap();
    assert!(body["runId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        post("/sync").await.unwrap().status(),
        StatusCode::CONFLICT,
        "one sync waits at a time"
    );
}
