//! `--once` with the built-in Dataverse simulator throttling: every eligible lead ends up in
//! Dynamics exactly once, as the simulator's own HTTP state shows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use clap::Parser;
use hunter_core::ports::LeadQuery;
use hunter_domain::model::SyncStatus;
use hunter_local::cli::Args;
use hunter_local::stack::Stack;
use serde_json::Value;

#[tokio::test]
async fn once_with_500_referrals_puts_every_eligible_lead_in_dynamics_exactly_once_despite_throttling()
 {
    let args = Args::parse_from([
        "hunter-local",
        "--in-memory",
        "--once",
        "--seed",
        "500",
        "--sim-dataverse-max-requests",
        "20",
        "--sim-dataverse-window",
        "1",
        "--sim-dataverse-retry-after",
        "1",
    ]);
    let stack = std::sync::Arc::new(Stack::build(&args).await.unwrap());

    let summary = hunter_local::run_once(&stack).await.unwrap();

    let leads = stack
        .store
        .list_leads(&LeadQuery {
            limit: Some(200),
            ..LeadQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert!(leads.len() > 5, "{summary:?}");
    assert!(
        leads.iter().all(|l| l.sync_status == SyncStatus::Synced),
        "{:?}",
        leads
            .iter()
            .map(|l| (&l.domain, l.sync_status, &l.last_error))
            .collect::<Vec<_>>()
    );
    assert_eq!(summary.dynamics_pushed, leads.len());
    assert_eq!((summary.dynamics_failed, summary.dlq), (0, 0));

    let dataverse = stack.dataverse_sim.as_ref().unwrap();
    let records: Vec<Value> = reqwest::get(format!("{}/_sim/records/leads", dataverse.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        *by_key
            .entry(record["hnt_hunterkey"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        records.len(),
        leads.len(),
        "one Dynamics lead per Hunter lead"
    );
    for lead in &leads {
        assert_eq!(
            by_key.get(lead.domain.as_str()),
            Some(&1),
            "{} exactly once",
            lead.domain
        );
        let record = records
            .iter()
            .find(|r| r["hnt_hunterkey"] == lead.domain.as_str())
            .unwrap();
        assert_eq!(lead.dynamics_id.as_deref(), record["leadid"].as_str());
    }
    // The limit mattered (the window filled many times over), and hunter-local, paced for the
    // simulator's limits, stayed below it instead of running into it.
    let usage = &dataverse.sim.usage()["sim-client-id"];
    assert!(
        usage.requests > 5 * 20,
        "the limits were low enough to matter: {usage:?}"
    );
    assert!(
        usage.throttled * 50 <= usage.http_requests,
        "under 2% answered 429: {usage:?}"
    );
    assert_eq!(dataverse.sim.duplicates("leads"), 0);
}

#[tokio::test]
async fn no_dynamics_pushes_nothing_and_leaves_leads_pending() {
    let args = Args::parse_from([
        "hunter-local",
        "--in-memory",
        "--once",
        "--seed",
        "60",
        "--no-dynamics",
    ]);
    let stack = std::sync::Arc::new(Stack::build(&args).await.unwrap());

    let summary = hunter_local::run_once(&stack).await.unwrap();

    assert!(stack.dataverse_sim.is_none() && stack.dynamics.is_none());
    assert_eq!(summary.dynamics_pushed, 0);
    assert!(summary.pushes_queued > 0, "the requests wait on the queue");
    let leads = stack
        .store
        .list_leads(&LeadQuery::default())
        .await
        .unwrap()
        .items;
    assert!(!leads.is_empty() && leads.iter().all(|l| l.sync_status == SyncStatus::Pending));
}
