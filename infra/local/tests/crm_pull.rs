//! The way back from Dynamics, in process with the built-in simulators over HTTP: a seller's
//! change in the Dataverse simulator comes back onto Hunter's lead within one pull, pushes never
//! undo it, and a CRM outcome mirrored to Partner Center does not come back as a push.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use hunter_core::messages::PushMessage;
use hunter_core::optimistic::{Change, update_lead};
use hunter_core::ports::{LeadQuery, OutgoingMessage};
use hunter_domain::crm::Outcome;
use hunter_domain::model::{Lead, SyncStatus};
use hunter_local::cli::Args;
use hunter_local::stack::Stack;
use hunter_local::worker;
use serde_json::{Value, json};

const AVERY: &str = "00000000-0000-0000-0000-00000000a001";

/// hunter-local's stack on the built-in simulators, after one `--once` sync (every lead pushed,
/// and pulled back once).
async fn synced_stack(extra: &[&str]) -> std::sync::Arc<Stack> {
    let mut args = vec!["hunter-local", "--in-memory", "--once", "--seed", "30"];
    args.extend_from_slice(extra);
    let stack = std::sync::Arc::new(Stack::build(&Args::parse_from(args)).await.unwrap());
    let summary = hunter_local::run_once(&stack).await.unwrap();
    let pull = summary.crm_pull.as_ref().unwrap();
    assert!(pull.full_read, "the first pull reads everything: {pull:?}");
    assert_eq!(pull.leads_updated, summary.dynamics_pushed, "{pull:?}");
    stack
}

async fn leads(stack: &Stack) -> Vec<Lead> {
    stack
        .store
        .list_leads(&LeadQuery {
            limit: Some(200),
            ..LeadQuery::default()
        })
        .await
        .unwrap()
        .items
}

async fn lead(stack: &Stack, domain: &str) -> Lead {
    stack
        .store
        .get_lead(&domain.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The Dataverse simulator's record of `domain`'s lead.
fn dataverse_lead(stack: &Stack, domain: &str) -> Value {
    let records = stack.dataverse_sim.as_ref().unwrap().sim.records("leads");
    let mut matching = records.into_iter().filter(|r| r["hnt_hunterkey"] == domain);
    let record = matching.next().unwrap();
    assert!(matching.next().is_none(), "one record per lead");
    record
}

async fn pull(stack: &Stack) -> hunter_core::crm_pull::PullSummary {
    worker::pull_crm(stack).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_sellers_change_appears_within_one_pull_and_a_later_push_of_a_new_score_does_not_undo_it()
{
    let stack = synced_stack(&[]).await;
    let all = leads(&stack).await;
    let target = all
        .iter()
        .find(|l| l.sync_status == SyncStatus::Synced)
        .unwrap();
    let domain = target.domain.to_string();
    let before = lead(&stack, &domain).await;
    let crm = before.crm.clone().unwrap();
    assert_eq!(
        (crm.status.as_deref(), crm.owner.as_deref()),
        (Some("Open"), Some("Hunter Sync")),
        "what the first pull saw"
    );

    // A seller qualifies the lead and takes it over.
    let dataverse = &stack.dataverse_sim.as_ref().unwrap().sim;
    dataverse
        .seller_update(
            "leads",
            "hnt_hunterkey",
            &domain,
            json!({"statecode": 1, "statuscode": 3,
                   "ownerid@odata.bind": format!("/systemusers({AVERY})")}),
        )
        .unwrap();

    let pulled = pull(&stack).await;
    assert!(!pulled.full_read);
    assert_eq!((pulled.changes, pulled.leads_updated), (1, 1), "{pulled:?}");
    let after = lead(&stack, &domain).await;
    let crm = after.crm.clone().unwrap();
    assert_eq!(crm.status.as_deref(), Some("Qualified"));
    assert_eq!(crm.status_reason.as_deref(), Some("Qualified"));
    assert_eq!(crm.owner.as_deref(), Some("Avery Seller"));
    assert_eq!(crm.owner_id.as_deref(), Some(AVERY));
    assert!(crm.updated_at.is_some());
    assert_eq!(
        (after.content_version, after.sync_status),
        (before.content_version, SyncStatus::Synced),
        "a pull asks for no push"
    );
    let audit = stack.store.list_audit(&after.domain, 10).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == "pull"
            && e.detail
                .as_deref()
                .unwrap_or_default()
                .contains("owner Avery Seller")),
        "{audit:?}"
    );

    // Hunter's side changes: a new score, pushed.
    let new_score = if before.score == Some(99) { 98 } else { 99 };
    let version = update_lead(stack.store.as_ref(), &after.domain, |stored| {
        let mut lead = stored.unwrap();
        lead.score = Some(new_score);
        lead.content_version += 1;
        lead.sync_status = SyncStatus::Pending;
        let version = lead.content_version;
        Change::Write(lead, version)
    })
    .await
    .unwrap();
    let request = PushMessage {
        domain: domain.clone(),
        lead_version: version,
        force: false,
        deferrals: 0,
    };
    let body = serde_json::to_string(&request).unwrap();
    assert!(
        stack
            .push_queue
            .send_batch(&[OutgoingMessage::new("0", body)])
            .await
            .unwrap()
            .is_empty()
    );
    worker::drain_pushes(&stack).await.unwrap();

    let record = dataverse_lead(&stack, &domain);
    assert_eq!(
        record["hnt_finalscore"], new_score,
        "the push landed: {record}"
    );
    assert_eq!(
        (
            &record["statecode"],
            &record["statuscode"],
            &record["_ownerid_value"]
        ),
        (&json!(1), &json!(3), &json!(AVERY)),
        "the push left the seller's status and owner alone: {record}"
    );
    let pushed = lead(&stack, &domain).await;
    assert_eq!(pushed.sync_status, SyncStatus::Synced);
    assert_eq!(
        pushed.crm.as_ref().unwrap().owner.as_deref(),
        Some("Avery Seller")
    );

    // The next pull sees Hunter's own write as a change of the record, and nothing new in it.
    let again = pull(&stack).await;
    assert_eq!(
        (again.changes, again.leads_updated, again.unchanged),
        (1, 0, 1),
        "{again:?}"
    );
    let last = lead(&stack, &domain).await;
    assert_eq!(last.crm, pushed.crm);
}

#[tokio::test]
async fn an_expired_cursor_reads_everything_again_and_changes_of_records_not_hunters_are_only_counted()
 {
    let stack = synced_stack(&[]).await;
    let dataverse = &stack.dataverse_sim.as_ref().unwrap().sim;
    dataverse.insert_record(
        "leads",
        json!({"subject": "Made by hand", "lastname": "Hand", "companyname": "Handmade Ltd"}),
    );
    let pulled = pull(&stack).await;
    assert_eq!((pulled.changes, pulled.not_hunters), (0, 1), "{pulled:?}");

    dataverse.expire_delta_tokens();
    let reread = pull(&stack).await;
    assert!(reread.full_read, "{reread:?}");
    assert_eq!(reread.changes, leads(&stack).await.len(), "{reread:?}");
    assert_eq!(reread.leads_updated, 0, "nothing changed: {reread:?}");
    let next = pull(&stack).await;
    assert!(!next.full_read, "the new cursor is kept: {next:?}");
}

/// A synced lead with at least one referral Partner Center has as `Active` (and, with
/// `single`, only that one referral); its domain and its Active referrals' ids.
async fn lead_with_active_referrals(stack: &Stack, single: bool) -> (String, Vec<String>) {
    for lead in leads(stack).await {
        if lead.sync_status != SyncStatus::Synced || (single && lead.referral_count != 1) {
            continue;
        }
        let mut active = Vec::new();
        for id in &lead.referral_ids {
            let record = stack.store.get_referral(id).await.unwrap().unwrap();
            if record.status.as_deref() == Some("Active")
                && record.domain == Some(lead.domain.clone())
            {
                active.push(id.clone());
            }
        }
        if !active.is_empty() && (!single || active.len() == 1) {
            return (lead.domain.to_string(), active);
        }
    }
    panic!("the seed has no lead with an Active referral");
}

/// Plays a seller qualifying the lead of `domain` into a new opportunity; answers its id.
fn qualify(stack: &Stack, domain: &str) -> String {
    let dataverse = &stack.dataverse_sim.as_ref().unwrap().sim;
    let lead_id = dataverse_lead(stack, domain)["leadid"]
        .as_str()
        .unwrap()
        .to_owned();
    let opportunity = dataverse.insert_record(
        "opportunities",
        json!({"name": format!("Deal {domain}"), "_originatingleadid_value": lead_id}),
    );
    dataverse
        .seller_update(
            "leads",
            "hnt_hunterkey",
            domain,
            json!({"statecode": 1, "statuscode": 3,
                   "qualifyingopportunityid@odata.bind": format!("/opportunities({opportunity})")}),
        )
        .unwrap();
    opportunity
}

fn referral_in_partner_center(stack: &Stack, id: &str) -> Value {
    stack
        .partner_center_sim
        .as_ref()
        .unwrap()
        .sim
        .referrals()
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn a_won_opportunity_is_mirrored_to_partner_center_once_and_does_not_come_back_as_a_push() {
    let stack = synced_stack(&["--mirror-crm-outcomes"]).await;
    let (domain, active) = lead_with_active_referrals(&stack, false).await;
    let dataverse = &stack.dataverse_sim.as_ref().unwrap().sim;

    // Qualified, and another opportunity made from the same lead is won: not the lead's outcome.
    let opportunity = qualify(&stack, &domain);
    let lead_id = dataverse_lead(&stack, &domain)["leadid"]
        .as_str()
        .unwrap()
        .to_owned();
    dataverse.insert_record(
        "opportunities",
        json!({"name": "Side deal", "_originatingleadid_value": lead_id, "statecode": 1}),
    );
    let pulled = pull(&stack).await;
    assert_eq!(
        (pulled.leads_updated, pulled.mirrored),
        (1, 0),
        "{pulled:?}"
    );
    let qualified = lead(&stack, &domain).await.crm.unwrap();
    assert_eq!(
        qualified.opportunity_id.as_deref(),
        Some(opportunity.as_str())
    );
    assert_eq!(qualified.opportunity_status.as_deref(), Some("Open"));

    // The opportunity the lead became is won.
    dataverse
        .seller_update(
            "opportunities",
            "name",
            &format!("Deal {domain}"),
            json!({"statecode": 1, "statuscode": 3}),
        )
        .unwrap();
    let version_before = dataverse_lead(&stack, &domain)["versionnumber"].clone();
    let pulled = pull(&stack).await;
    assert_eq!(pulled.leads_updated, 1, "{pulled:?}");
    let won = lead(&stack, &domain).await;
    let crm = won.crm.clone().unwrap();
    assert_eq!(crm.opportunity_status.as_deref(), Some("Won"));
    assert_eq!(
        (pulled.mirrored, pulled.mirror_failed),
        (active.len(), 0),
        "{pulled:?}"
    );
    assert_eq!(crm.mirror_due, None, "done");
    for id in &active {
        let referral = referral_in_partner_center(&stack, id);
        assert_eq!(
            (&referral["status"], &referral["substatus"]),
            (&json!("Closed"), &json!("Won")),
            "{referral}"
        );
    }
    let audit = stack.store.list_audit(&won.domain, 20).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "mirror" && e.result == "closed")
            .count(),
        active.len(),
        "{audit:?}"
    );

    // The sweep brings the closed referrals back: recorded, shown, and not pushed again.
    worker::run_sync(&stack, None).await.unwrap();
    worker::drain_referrals(&stack).await.unwrap();
    worker::drain_pushes(&stack).await.unwrap();
    let back = lead(&stack, &domain).await;
    for id in &active {
        let record = stack.store.get_referral(id).await.unwrap().unwrap();
        assert_eq!(
            record.status.as_deref(),
            Some("Closed"),
            "stored as Partner Center has it"
        );
    }
    assert_eq!(back.sync_status, SyncStatus::Synced);
    assert_eq!(
        back.content_version, won.content_version,
        "nothing new for Dynamics"
    );
    assert!(
        back.crm.as_ref().unwrap().mirrored.is_empty(),
        "the marks came back"
    );
    assert_eq!(
        dataverse_lead(&stack, &domain)["versionnumber"],
        version_before,
        "no push reached Dataverse"
    );
    // And the next pull does not close them again.
    let next = pull(&stack).await;
    assert_eq!(next.mirrored, 0, "{next:?}");
}

#[tokio::test]
async fn an_outcome_hunter_first_sees_already_reached_is_not_mirrored() {
    let stack = std::sync::Arc::new(
        Stack::build(&Args::parse_from([
            "hunter-local",
            "--in-memory",
            "--once",
            "--seed",
            "30",
            "--mirror-crm-outcomes",
        ]))
        .await
        .unwrap(),
    );
    worker::run_sync(&stack, None).await.unwrap();
    worker::drain_referrals(&stack).await.unwrap();
    worker::drain_pushes(&stack).await.unwrap();
    let (domain, active) = lead_with_active_referrals(&stack, false).await;
    // Lost before Hunter ever pulled: history, not news.
    stack
        .dataverse_sim
        .as_ref()
        .unwrap()
        .sim
        .seller_update(
            "leads",
            "hnt_hunterkey",
            &domain,
            json!({"statecode": 2, "statuscode": 4}),
        )
        .unwrap();
    let first = pull(&stack).await;
    assert!(first.full_read);
    assert_eq!(first.mirrored, 0, "{first:?}");
    assert_eq!(
        lead(&stack, &domain).await.crm.unwrap().status.as_deref(),
        Some("Disqualified")
    );
    assert_ne!(
        referral_in_partner_center(&stack, &active[0])["status"],
        "Closed"
    );
}

#[tokio::test]
async fn a_pull_that_fails_keeps_its_cursor_and_the_next_one_reads_what_changed_meanwhile() {
    let stack = synced_stack(&[]).await;
    let domain = leads(&stack).await[0].domain.to_string();
    let dataverse = stack.dataverse_sim.as_ref().unwrap();
    let http = reqwest::Client::new();
    let refuse_next = |statuses: Value| {
        http.put(format!("{}/_sim/faults", dataverse.base_url))
            .json(&json!({"fail_next": statuses}))
            .send()
    };
    assert!(
        refuse_next(json!([403]))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let failed = worker::pull_crm(&stack).await.unwrap().unwrap_err();
    assert!(
        !failed.is_retryable(),
        "a refused read needs a person: {failed}"
    );

    dataverse
        .sim
        .seller_update(
            "leads",
            "hnt_hunterkey",
            &domain,
            json!({"statecode": 2, "statuscode": 6}),
        )
        .unwrap();
    let pulled = pull(&stack).await;
    assert!(!pulled.full_read, "the cursor was kept: {pulled:?}");
    assert_eq!((pulled.changes, pulled.leads_updated), (1, 1), "{pulled:?}");
    let crm = lead(&stack, &domain).await.crm.unwrap();
    assert_eq!(
        (crm.status.as_deref(), crm.status_reason.as_deref()),
        (Some("Disqualified"), Some("No Longer Interested"))
    );
}

#[tokio::test]
async fn a_referral_changed_in_partner_center_since_hunter_read_it_is_closed_only_once_hunter_has_the_new_version()
 {
    let stack = synced_stack(&["--mirror-crm-outcomes"]).await;
    let (domain, active) = lead_with_active_referrals(&stack, true).await;
    let referral_id = active[0].clone();
    let partner_center = &stack.partner_center_sim.as_ref().unwrap().sim;
    let mut changed = referral_in_partner_center(&stack, &referral_id);
    changed["eTag"] = json!("\"changed-elsewhere\"");
    changed["updatedDateTime"] = json!(chrono::Utc::now().to_rfc3339());
    partner_center.upsert_referrals(vec![changed]);

    // The seller disqualifies the lead: Lost, but Partner Center has a newer referral (412).
    stack
        .dataverse_sim
        .as_ref()
        .unwrap()
        .sim
        .seller_update(
            "leads",
            "hnt_hunterkey",
            &domain,
            json!({"statecode": 2, "statuscode": 4}),
        )
        .unwrap();
    let pulled = pull(&stack).await;
    assert_eq!(
        (pulled.mirrored, pulled.mirror_failed),
        (0, 0),
        "{pulled:?}"
    );
    assert_ne!(
        referral_in_partner_center(&stack, &referral_id)["status"],
        "Closed"
    );
    let after = lead(&stack, &domain).await;
    let crm = after.crm.clone().unwrap();
    assert!(
        crm.mirrored.is_empty(),
        "a close that did not happen is not marked"
    );
    assert_eq!(
        (crm.mirror_due, crm.mirror_attempts),
        (Some(Outcome::Lost), 1)
    );
    let audit = stack.store.list_audit(&after.domain, 10).await.unwrap();
    let retry = audit.iter().find(|e| e.action == "mirror").unwrap();
    assert_eq!(retry.result, "retry", "{retry:?}");
    assert!(
        retry.detail.as_deref().unwrap().contains(&referral_id),
        "{retry:?}"
    );

    // Nothing changes in Dynamics, but the outcome is still due: the next pull tries again,
    // and once the sweep brought Partner Center's new version (its eTag), it closes it.
    let again = pull(&stack).await;
    assert_eq!((again.changes, again.mirrored), (0, 0), "{again:?}");
    worker::run_sync(&stack, None).await.unwrap();
    worker::drain_referrals(&stack).await.unwrap();
    let closed = pull(&stack).await;
    assert_eq!(
        (closed.mirrored, closed.mirror_failed),
        (1, 0),
        "{closed:?}"
    );
    let referral = referral_in_partner_center(&stack, &referral_id);
    assert_eq!(
        (&referral["status"], &referral["substatus"]),
        (&json!("Closed"), &json!("Lost"))
    );
    assert_eq!(lead(&stack, &domain).await.crm.unwrap().mirror_due, None);
}
