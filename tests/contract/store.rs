//! The store contract: every adapter must pass these.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hunter_core::ports::{LeadQuery, ReferralQuery, Store, UpsertOutcome};
use hunter_core::ports::{RunCount, StoreError};
use hunter_domain::model::{
    AuditEntry, Lead, LeadReferral, ReferralRecord, RunStatus, SyncRun, SyncState, SyncStatus,
};
use hunter_domain::rules::{Domain, DomainSource, SkipReason, normalize_domain};
use hunter_domain::scoring::{PriorityCategory, Segment};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 8, 0, 0)
        .single()
        .expect("valid time")
        + Duration::minutes(minute)
}

fn domain(text: &str) -> Domain {
    normalize_domain(text).expect("valid domain")
}

fn referral(id: &str, created: i64, updated: i64, etag: &str) -> ReferralRecord {
    ReferralRecord {
        id: id.to_owned(),
        engagement_id: Some(format!("eng-{id}")),
        name: Some(format!("Referral {id}")),
        status: Some("New".to_owned()),
        substatus: Some("Pending".to_owned()),
        referral_type: Some("Shared".to_owned()),
        qualification: Some("SalesQualified".to_owned()),
        direction: Some("Incoming".to_owned()),
        customer_name: Some("Contoso Ltd".to_owned()),
        customer_country: Some("US".to_owned()),
        deal_value: Some(50_000.5),
        currency: Some("USD".to_owned()),
        domain: Some(domain("contoso.com")),
        domain_source: Some(DomainSource::CustomerEmail),
        eligible: true,
        skip_reason: None,
        skip_detail: None,
        created_date_time: Some(at(created)),
        updated_date_time: Some(at(updated)),
        etag: Some(etag.to_owned()),
        synced_at: at(1000),
        arrived_by: hunter_domain::model::Arrival::Webhook,
        raw: format!(r#"{{"id":"{id}"}}"#),
    }
}

fn skipped(mut record: ReferralRecord, reason: SkipReason) -> ReferralRecord {
    record.eligible = false;
    record.skip_reason = Some(reason);
    record
}

fn lead(name: &str, score: Option<u8>, segment: Option<&str>) -> Lead {
    let mut lead = Lead::new(domain(name), at(0));
    lead.score = score;
    lead.segment = segment.map(|s| s.parse().unwrap());
    lead.company_name = Some(format!("{name} Inc"));
    lead
}

pub async fn upsert_inserts_then_a_newer_version_replaces(store: &dyn Store) {
    let first = referral("r1", 0, 10, "\"e1\"");
    assert_eq!(
        store.upsert_referral(&first).await.unwrap(),
        UpsertOutcome::Inserted
    );
    let mut newer = referral("r1", 0, 20, "\"e2\"");
    newer.status = Some("Active".to_owned());
    assert_eq!(
        store.upsert_referral(&newer).await.unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(store.get_referral("r1").await.unwrap(), Some(newer));
}

pub async fn a_batch_of_referrals_is_upserted_each_with_its_own_outcome(store: &dyn Store) {
    let stored = referral("r2", 0, 20, "\"e2\"");
    store.upsert_referral(&stored).await.unwrap();
    let new = referral("r1", 0, 10, "\"e1\"");
    let older = referral("r2", 0, 10, "\"e1\"");
    let newer = referral("r2", 0, 30, "\"e3\"");
    let outcomes = store
        .upsert_referrals(&[&new, &older, &newer, &newer])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        outcomes,
        [
            UpsertOutcome::Inserted,
            UpsertOutcome::Stale,
            UpsertOutcome::Updated,
            // Named again in the same batch: the first one stored it.
            UpsertOutcome::Unchanged,
        ]
    );
    assert_eq!(store.get_referral("r1").await.unwrap(), Some(new));
    assert_eq!(store.get_referral("r2").await.unwrap(), Some(newer));
    assert!(store.upsert_referrals(&[]).await.is_empty());
}

pub async fn upsert_rejects_a_stale_version(store: &dyn Store) {
    let newer = referral("r1", 0, 20, "\"e2\"");
    store.upsert_referral(&newer).await.unwrap();
    let mut older = referral("r1", 0, 10, "\"e1\"");
    older.status = Some("Closed".to_owned());
    assert_eq!(
        store.upsert_referral(&older).await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(store.get_referral("r1").await.unwrap(), Some(newer));
}

pub async fn upsert_of_an_equal_version_is_idempotent(store: &dyn Store) {
    let record = referral("r1", 0, 10, "\"e1\"");
    store.upsert_referral(&record).await.unwrap();
    assert_eq!(
        store.upsert_referral(&record).await.unwrap(),
        UpsertOutcome::Unchanged
    );
    let mut same_time_new_etag = referral("r1", 0, 10, "\"e9\"");
    same_time_new_etag.substatus = Some("Received".to_owned());
    assert_eq!(
        store.upsert_referral(&same_time_new_etag).await.unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(
        store.get_referral("r1").await.unwrap(),
        Some(same_time_new_etag)
    );
}

pub async fn a_record_round_trips_every_field(store: &dyn Store) {
    let hostile = "<img src=x onerror=alert(1)> \u{202e}\u{0007} 'quoted' \"double\" Bücher";
    let mut record = referral("r-hostile", 5, 5, "\"e\"");
    record.name = Some(hostile.to_owned());
    record.customer_name = None;
    record.deal_value = None;
    record.domain = Some(domain("Bücher.de"));
    let invalid = ReferralRecord::invalid("{not json", "not JSON: expected value", at(3));
    store.upsert_referral(&record).await.unwrap();
    store.upsert_referral(&invalid).await.unwrap();
    assert_eq!(store.get_referral("r-hostile").await.unwrap(), Some(record));
    assert_eq!(
        store.get_referral(&invalid.id).await.unwrap(),
        Some(invalid)
    );
    assert_eq!(store.get_referral("missing").await.unwrap(), None);
}

pub async fn referrals_page_newest_first_with_stable_cursors(store: &dyn Store) {
    for i in 0..25 {
        store
            .upsert_referral(&referral(&format!("r{i:02}"), i, i, "\"e\""))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let page = store
            .list_referrals(&ReferralQuery {
                limit: Some(10),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        pages.push(page.items.len());
        seen.extend(page.items.into_iter().map(|r| r.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, vec![10, 10, 5]);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("r{i:02}")).collect();
    assert_eq!(seen, expected);
}

pub async fn referrals_filter_by_eligibility_reason_status_and_text(store: &dyn Store) {
    for i in 0..30 {
        let mut record = referral(&format!("r{i:02}"), i, i, "\"e\"");
        if i % 3 == 0 {
            record = skipped(record, SkipReason::NoDomain);
            record.domain = None;
        } else if i % 3 == 1 {
            record = skipped(record, SkipReason::StatusClosed);
            record.status = Some("Closed".to_owned());
        }
        if i == 7 {
            record.customer_name = Some("Fabrikam Manufacturing".to_owned());
        }
        store.upsert_referral(&record).await.unwrap();
    }
    let ids = |items: Vec<ReferralRecord>| items.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let eligible = ReferralQuery {
        eligible: Some(true),
        limit: Some(200),
        ..Default::default()
    };
    let eligible = ids(store.list_referrals(&eligible).await.unwrap().items);
    assert_eq!(eligible.len(), 10);
    assert!(
        eligible
            .iter()
            .all(|id| id[1..].parse::<u32>().unwrap() % 3 == 2)
    );

    let no_domain = store
        .list_referrals(&ReferralQuery {
            skip_reason: Some(SkipReason::NoDomain),
            limit: Some(4),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(no_domain.items), vec!["r27", "r24", "r21", "r18"]);
    assert!(no_domain.next_cursor.is_some());

    let closed = store
        .list_referrals(&ReferralQuery {
            status: Some("Closed".to_owned()),
            limit: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(closed.items), vec!["r28", "r25", "r22"]);
    let closed_next = store
        .list_referrals(&ReferralQuery {
            status: Some("Closed".to_owned()),
            limit: Some(3),
            cursor: closed.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(closed_next.items), vec!["r19", "r16", "r13"]);

    let ineligible = ReferralQuery {
        eligible: Some(false),
        limit: Some(200),
        ..Default::default()
    };
    assert_eq!(
        store.list_referrals(&ineligible).await.unwrap().items.len(),
        20
    );

    let text = ReferralQuery {
        q: Some("FABRIKAM".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_referrals(&text).await.unwrap().items),
        vec!["r07"]
    );
}

pub async fn a_foreign_cursor_is_rejected(store: &dyn Store) {
    store
        .upsert_referral(&referral("r1", 0, 0, "\"e\""))
        .await
        .unwrap();
    let result = store
        .list_referrals(&ReferralQuery {
            cursor: Some("not-a-cursor!".to_owned()),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidCursor)),
        "{result:?}"
    );
}

pub async fn leads_are_written_with_a_version_check(store: &dyn Store) {
    let mut contoso = lead("contoso.com", None, None);
    store.put_lead(&contoso, None, None).await.unwrap();
    let again = store.put_lead(&contoso, None, None).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    contoso.referral_ids.push("r1".to_owned());
    contoso.referral_count = 1;
    // What a pull from the CRM wrote on it round-trips too (a mirrored referral included).
    let mut crm = hunter_domain::crm::CrmState {
        status: Some("Qualified".to_owned()),
        status_reason: Some("Qualified".to_owned()),
        owner: Some("Avery Seller".to_owned()),
        owner_id: Some("00000000-0000-0000-0000-00000000a001".to_owned()),
        opportunity_id: Some("00000000-0000-0000-0000-0000000000b1".to_owned()),
        opportunity_status: Some("Won".to_owned()),
        updated_at: Some(at(2)),
        ..Default::default()
    };
    crm.mirrored.insert("r1".to_owned(), "Won".to_owned());
    contoso.crm = Some(crm);
    contoso.version = 2;
    store.put_lead(&contoso, Some(1), None).await.unwrap();
    let stale = store.put_lead(&contoso, Some(1), None).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(ref e)) if !e.is_empty()),
        "{stale:?}"
    );
    assert!(stale.is_err_and(|e| e.is_retryable()));
    assert_eq!(
        store.get_lead(&domain("contoso.com")).await.unwrap(),
        Some(contoso)
    );
}

fn contribution(id: &str, value: f64) -> LeadReferral {
    LeadReferral {
        id: id.to_owned(),
        referral_type: Some("Shared".to_owned()),
        status: Some("Active".to_owned()),
        deal_value: Some(value),
        currency: Some("EUR".to_owned()),
        customer_name: Some("Contoso".to_owned()),
        updated_date_time: Some(at(1)),
        opportunity_id: (id == "r1").then(|| "00000000-0000-0000-0000-0000000000a1".to_owned()),
    }
}

pub async fn a_lead_and_a_referral_contribution_are_written_together_or_not_at_all(
    store: &dyn Store,
) {
    let contoso = domain("contoso.com");
    let mut lead = lead("contoso.com", None, None);
    store
        .put_lead(&lead, None, Some(&contribution("r1", 10.0)))
        .await
        .unwrap();
    assert_eq!(
        store.get_contribution(&contoso, "r1").await.unwrap(),
        Some(contribution("r1", 10.0))
    );
    assert_eq!(store.get_contribution(&contoso, "r2").await.unwrap(), None);

    // A lost version check writes neither the lead nor the contribution.
    lead.version = 2;
    lead.referral_count = 2;
    let lost = store
        .put_lead(&lead, Some(7), Some(&contribution("r2", 20.0)))
        .await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    assert_eq!(store.get_contribution(&contoso, "r2").await.unwrap(), None);
    assert_eq!(
        store.get_lead(&contoso).await.unwrap().map(|l| l.version),
        Some(1)
    );

    store
        .put_lead(&lead, Some(1), Some(&contribution("r1", 30.0)))
        .await
        .unwrap();
    assert_eq!(
        store.get_contribution(&contoso, "r1").await.unwrap(),
        Some(contribution("r1", 30.0)),
        "a referral's contribution is replaced, not added"
    );
    let page = store
        .list_contributions(&contoso, None, None)
        .await
        .unwrap();
    assert_eq!(page.items, vec![contribution("r1", 30.0)]);
    assert_eq!(
        store.get_lead(&contoso).await.unwrap(),
        Some(lead),
        "audit entries and contributions beside the lead leave it as written"
    );
}

pub async fn contributions_page_by_referral_id(store: &dyn Store) {
    let contoso = domain("contoso.com");
    let mut lead = lead("contoso.com", None, None);
    let ids: Vec<String> = (0..7).map(|n| format!("r{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let expected = (n > 0).then_some(lead.version);
        lead.version = u64::try_from(n).unwrap() + 1;
        store
            .put_lead(&lead, expected, Some(&contribution(id, 1.0)))
            .await
            .unwrap();
    }
    store
        .append_audit(&AuditEntry::new(
            contoso.clone(),
            at(2),
            "tests",
            "upsert",
            "synced",
            None,
        ))
        .await
        .unwrap();
    store
        .put_lead(
            &self::lead("fabrikam.com", None, None),
            None,
            Some(&contribution("other", 1.0)),
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_contributions(&contoso, Some(3), cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "every contribution once, by id, none of another lead"
    );
    let garbage = store
        .list_contributions(&contoso, None, Some("!!not-a-cursor"))
        .await;
    assert!(
        matches!(garbage, Err(StoreError::InvalidCursor)),
        "{garbage:?}"
    );
}

pub async fn leads_list_by_score_and_segment(store: &dyn Store) {
    let leads = [
        lead("alpha.com", Some(85), Some("Migration")),
        lead("bravo.com", Some(40), Some("Cold")),
        lead("charlie.com", Some(72), Some("Existing")),
        lead("delta.com", Some(90), Some("Migration")),
        lead("echo.com", None, None),
    ];
    for l in &leads {
        store.put_lead(l, None, None).await.unwrap();
    }
    let mut synced = lead("foxtrot.com", Some(10), Some("Skip"));
    synced.sync_status = SyncStatus::Synced;
    store.put_lead(&synced, None, None).await.unwrap();
    let domains = |items: Vec<Lead>| {
        items
            .into_iter()
            .map(|l| l.domain.to_string())
            .collect::<Vec<_>>()
    };

    let all = store.list_leads(&LeadQuery::default()).await.unwrap();
    assert_eq!(
        domains(all.items),
        [
            "delta.com",
            "alpha.com",
            "charlie.com",
            "bravo.com",
            "foxtrot.com",
            "echo.com"
        ]
    );

    let migration = LeadQuery {
        segment: Some(Segment::Migration),
        ..Default::default()
    };
    assert_eq!(
        domains(store.list_leads(&migration).await.unwrap().items),
        ["delta.com", "alpha.com"]
    );

    let strong = store
        .list_leads(&LeadQuery {
            min_score: Some(72),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(domains(strong.items), ["delta.com", "alpha.com"]);
    let rest = store
        .list_leads(&LeadQuery {
            min_score: Some(72),
            limit: Some(2),
            cursor: strong.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(domains(rest.items), ["charlie.com"]);
    assert_eq!(rest.next_cursor, None);

    let by_status = LeadQuery {
        sync_status: Some(SyncStatus::Synced),
        ..Default::default()
    };
    assert_eq!(
        domains(store.list_leads(&by_status).await.unwrap().items),
        ["foxtrot.com"]
    );
    let by_text = LeadQuery {
        q: Some("CHARLIE".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        domains(store.list_leads(&by_text).await.unwrap().items),
        ["charlie.com"]
    );
}

pub async fn leads_filter_by_any_of_several_priority_categories(store: &dyn Store) {
    for (name, category) in [
        ("p1.com", Some(PriorityCategory::P1)),
        ("p2.com", Some(PriorityCategory::P2)),
        ("p3.com", Some(PriorityCategory::P3)),
        ("unscored.com", None),
    ] {
        let mut l = lead(name, category.map(|_| 50), None);
        l.priority_category = category;
        store.put_lead(&l, None, None).await.unwrap();
    }
    let listed = |categories: Vec<PriorityCategory>| async move {
        let mut domains: Vec<String> = store
            .list_leads(&LeadQuery {
                priority_categories: categories,
                ..LeadQuery::default()
            })
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|l| l.domain.to_string())
            .collect();
        domains.sort();
        domains
    };
    assert_eq!(
        listed(vec![PriorityCategory::P1, PriorityCategory::P2]).await,
        ["p1.com", "p2.com"]
    );
    assert_eq!(listed(vec![PriorityCategory::P3]).await, ["p3.com"]);
    assert_eq!(listed(vec![]).await.len(), 4, "no categories: every lead");
}

pub async fn lead_stats_count_every_lead_exactly(store: &dyn Store) {
    // More leads than one page of the store's count query, beside items that are not leads.
    let total = 1234u64;
    for n in 0..total {
        let mut l = lead(&format!("company{n}.com"), None, None);
        if n % 2 == 0 {
            l.score = Some(u8::try_from(n % 101).unwrap());
            l.segment = Some(if n % 4 == 0 {
                Segment::Migration
            } else {
                Segment::Cold
            });
            l.priority_category = Some(PriorityCategory::P1);
            l.provider = Some("Google".to_owned());
        }
        if n % 5 == 0 {
            l.sync_status = SyncStatus::Synced;
        }
        store.put_lead(&l, None, None).await.unwrap();
    }
    store
        .upsert_referral(&referral("r1", 1, 1, "\"e1\""))
        .await
        .unwrap();

    let stats = store.lead_stats().await.unwrap();
    assert_eq!(stats.leads, total);
    assert_eq!(stats.scored, total / 2);
    assert_eq!(stats.segments["Migration"], 309);
    assert_eq!(stats.segments["Cold"], 308);
    assert_eq!(stats.priority_categories["P1"], total / 2);
    assert_eq!(stats.providers["Google"], total / 2);
    assert_eq!(stats.sync_statuses["synced"], 247);
    assert_eq!(stats.sync_statuses["pending"], total - 247);
    assert_eq!(stats.score_bands.values().sum::<u64>(), total / 2);
    assert_eq!(stats.scan_states["pending"], total);
}

pub async fn audit_entries_are_append_only_and_newest_first(store: &dyn Store) {
    let contoso = domain("contoso.com");
    let entry = |id: &str, minute: i64| AuditEntry {
        id: id.to_owned(),
        domain: contoso.clone(),
        at: at(minute),
        actor: "push-dynamics".to_owned(),
        action: "upsert_lead".to_owned(),
        result: "synced".to_owned(),
        detail: Some(format!("attempt {id}")),
    };
    store
        .put_lead(&lead("contoso.com", None, None), None, None)
        .await
        .unwrap();
    for (id, minute) in [("a1", 1), ("a2", 3), ("a3", 2)] {
        store.append_audit(&entry(id, minute)).await.unwrap();
    }
    let duplicate = store.append_audit(&entry("a2", 3)).await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    let trail = store.list_audit(&contoso, 10).await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["a2", "a3", "a1"]
    );
    assert_eq!(store.list_audit(&contoso, 1).await.unwrap().len(), 1);
    assert!(
        store
            .list_audit(&domain("other.com"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.get_lead(&contoso).await.unwrap().is_some(),
        "audit entries must not disturb the lead item"
    );
}

pub async fn sync_runs_list_newest_first(store: &dyn Store) {
    for i in 0..7 {
        let run = SyncRun {
            id: format!("run{i}"),
            started_at: at(i * 15),
            finished_at: Some(at(i * 15 + 1)),
            status: if i == 3 {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            pages: 2,
            fetched: 150,
            enqueued: 148,
            recorded_invalid: 2,
            stored: 149,
            eligible: 145,
            skipped: BTreeMap::from([("no_domain".to_owned(), 4)]),
            outcomes: BTreeMap::new(),
            summarized_at: None,
            error: (i == 3).then(|| "401 after refresh".to_owned()),
        };
        store.put_sync_run(&run).await.unwrap();
    }
    let first = store.list_sync_runs(Some(5), None).await.unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["run6", "run5", "run4", "run3", "run2"]
    );
    let second = store
        .list_sync_runs(Some(5), first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["run1", "run0"]
    );
    assert_eq!(second.next_cursor, None);
    let failed = store.get_sync_run("run3").await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (RunStatus::Failed, Some("401 after refresh"))
    );
    assert_eq!((failed.enqueued, failed.recorded_invalid), (148, 2));
    let mut running = failed.clone();
    running.status = RunStatus::Running;
    store.put_sync_run(&running).await.unwrap();
    assert_eq!(store.get_sync_run("run3").await.unwrap(), Some(running));
}

pub async fn sync_state_is_written_with_a_version_check(store: &dyn Store) {
    let mut state = SyncState {
        key: "partner_center_watermark".to_owned(),
        value: serde_json::json!({"updatedDateTime": "2026-10-29T08:01:12.12Z"}),
        version: 1,
        updated_at: at(0),
    };
    assert_eq!(store.get_state(&state.key).await.unwrap(), None);
    store.put_state(&state, None).await.unwrap();
    state.value = serde_json::json!({"updatedDateTime": "2026-10-30T00:00:00Z", "nextLink": "http://x/?$skiptoken=a"});
    state.version = 2;
    store.put_state(&state, Some(1)).await.unwrap();
    let lost = store.put_state(&state, Some(1)).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    assert!(matches!(
        store.put_state(&state, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_state(&state.key).await.unwrap(), Some(state));
}

pub async fn ingest_counts_of_a_batch_count_each_referral_once(store: &dyn Store) {
    let first = SyncRun::start("run-batch-a", at(0));
    let second = SyncRun::start("run-batch-b", at(1));
    store.put_sync_run(&first).await.unwrap();
    store.put_sync_run(&second).await.unwrap();
    let count = |run_id, referral_id, outcome, skip_reason| RunCount {
        run_id,
        referral_id,
        outcome,
        skip_reason,
    };
    assert_eq!(
        store.count_all_ingested(&[]).await.unwrap(),
        Vec::<bool>::new()
    );
    let counted = store
        .count_all_ingested(&[
            count(&first.id, "r1", UpsertOutcome::Inserted, None),
            count(
                &second.id,
                "r1",
                UpsertOutcome::Inserted,
                Some(SkipReason::NoDomain),
            ),
            count(&first.id, "r2", UpsertOutcome::Updated, None),
            // Named twice in one batch (a message delivered twice), and a run that does not exist.
            count(&first.id, "r1", UpsertOutcome::Unchanged, None),
            count("no-such-run", "r9", UpsertOutcome::Inserted, None),
        ])
        .await
        .unwrap();
    assert_eq!(counted, [true, true, true, false, false]);
    // The next batch: a referral counted before is not counted again.
    let counted = store
        .count_all_ingested(&[
            count(&first.id, "r2", UpsertOutcome::Unchanged, None),
            count(
                &first.id,
                "r3",
                UpsertOutcome::Inserted,
                Some(SkipReason::StatusClosed),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(counted, [false, true]);

    let first = store.get_sync_run(&first.id).await.unwrap().unwrap();
    assert_eq!((first.stored, first.eligible), (3, 2));
    assert_eq!(
        first.outcomes,
        BTreeMap::from([("inserted".to_owned(), 2), ("updated".to_owned(), 1)])
    );
    assert_eq!(
        first.skipped,
        BTreeMap::from([("status_closed".to_owned(), 1)])
    );
    let second = store.get_sync_run(&second.id).await.unwrap().unwrap();
    assert_eq!((second.stored, second.eligible), (1, 0));
    assert_eq!(
        second.skipped,
        BTreeMap::from([("no_domain".to_owned(), 1)])
    );
    assert_eq!(store.get_sync_run("no-such-run").await.unwrap(), None);
}

pub async fn ingest_counts_add_up_and_survive_run_updates(store: &dyn Store) {
    let mut run = SyncRun::start("run-counted", at(0));
    store.put_sync_run(&run).await.unwrap();
    let counts = [
        ("r1", UpsertOutcome::Inserted, None),
        ("r2", UpsertOutcome::Updated, None),
        ("r3", UpsertOutcome::Inserted, Some(SkipReason::NoDomain)),
        (
            "r4",
            UpsertOutcome::Unchanged,
            Some(SkipReason::NotIncoming),
        ),
        ("r5", UpsertOutcome::Inserted, Some(SkipReason::NoDomain)),
    ];
    for (referral, outcome, reason) in counts {
        assert!(
            store
                .count_ingested(RunCount {
                    run_id: &run.id,
                    referral_id: referral,
                    outcome,
                    skip_reason: reason
                })
                .await
                .unwrap(),
            "{referral} counted"
        );
    }
    // A redelivered message is not counted twice; an unknown run is left alone.
    assert!(
        !store
            .count_ingested(RunCount {
                run_id: &run.id,
                referral_id: "r3",
                outcome: UpsertOutcome::Unchanged,
                skip_reason: Some(SkipReason::NoDomain)
            })
            .await
            .unwrap()
    );
    assert!(
        !store
            .count_ingested(RunCount {
                run_id: "no-such-run",
                referral_id: "r1",
                outcome: UpsertOutcome::Inserted,
                skip_reason: None
            })
            .await
            .unwrap()
    );

    run.status = RunStatus::Succeeded;
    run.finished_at = Some(at(2));
    run.pages = 1;
    run.fetched = 5;
    run.enqueued = 5;
    store.put_sync_run(&run).await.unwrap();

    let stored = store.get_sync_run(&run.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.pages, stored.fetched, stored.enqueued),
        (RunStatus::Succeeded, 1, 5, 5)
    );
    assert_eq!((stored.stored, stored.eligible), (5, 2));
    assert_eq!(
        stored.skipped,
        BTreeMap::from([("no_domain".to_owned(), 2), ("not_incoming".to_owned(), 1)])
    );
    assert_eq!(
        stored.outcomes,
        BTreeMap::from([
            ("inserted".to_owned(), 3),
            ("updated".to_owned(), 1),
            ("unchanged".to_owned(), 1)
        ])
    );
    assert_eq!(store.get_sync_run("no-such-run").await.unwrap(), None);

    // The summary is claimed once, and a later run update keeps the claim.
    assert!(store.claim_run_summary(&run.id).await.unwrap());
    assert!(!store.claim_run_summary(&run.id).await.unwrap());
    assert!(!store.claim_run_summary("no-such-run").await.unwrap());
    store.put_sync_run(&run).await.unwrap();
    assert!(
        store
            .get_sync_run(&run.id)
            .await
            .unwrap()
            .unwrap()
            .summarized_at
            .is_some()
    );
}

pub async fn a_message_failure_is_kept_per_queue_and_message(store: &dyn Store) {
    use hunter_core::ports::MessageFailure;
    let at = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let failure = |queue: &str, error: &str, receive_count| MessageFailure {
        queue: queue.to_owned(),
        message_id: "m-1".to_owned(),
        receive_count,
        error: error.to_owned(),
        at,
    };
    assert_eq!(store.get_failure("referrals", "m-1").await.unwrap(), None);
    store
        .record_failure(&failure("referrals", "store unavailable", 1))
        .await
        .unwrap();
    store
        .record_failure(&failure("dynamics-push", "dataverse 500", 1))
        .await
        .unwrap();
    store
        .record_failure(&failure("referrals", "store unavailable again", 2))
        .await
        .unwrap();
    assert_eq!(
        store.get_failure("referrals", "m-1").await.unwrap(),
        Some(failure("referrals", "store unavailable again", 2)),
        "the last failure replaces the earlier one"
    );
    assert_eq!(
        store.get_failure("dynamics-push", "m-1").await.unwrap(),
        Some(failure("dynamics-push", "dataverse 500", 1)),
        "each queue keeps its own"
    );
}

/// A raw payload larger than a DynamoDB item holds (400 KB), with multi-byte characters where
/// the adapter may cut it.
fn large_raw(id: &str, fill: char) -> String {
    let notes: String = std::iter::repeat_n(fill, 200_000).collect();
    serde_json::json!({"id": id, "details": {"notes": notes}, "tail": "ü😀 end"}).to_string()
}

pub async fn a_record_with_a_600_kb_raw_payload_round_trips(store: &dyn Store) {
    let mut large = referral("r-large", 1, 10, "\"e1\"");
    large.raw = large_raw("r-large", '€');
    assert!(large.raw.len() > 600_000, "{}", large.raw.len());
    assert_eq!(
        store.upsert_referral(&large).await.unwrap(),
        UpsertOutcome::Inserted
    );
    store
        .upsert_referral(&referral("r-small", 0, 10, "\"e1\""))
        .await
        .unwrap();
    assert_eq!(
        store.get_referral("r-large").await.unwrap(),
        Some(large.clone())
    );
    let listed = store
        .list_referrals(&ReferralQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], large, "newest created first, raw intact");
    // The same version again changes nothing; an older large version does not replace it.
    assert_eq!(
        store.upsert_referral(&large).await.unwrap(),
        UpsertOutcome::Unchanged
    );
    let mut stale = referral("r-large", 1, 5, "\"e0\"");
    stale.raw = large_raw("r-large", 'ö');
    assert_eq!(
        store.upsert_referral(&stale).await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        store.get_referral("r-large").await.unwrap(),
        Some(large.clone())
    );
    // A newer version replaces it, whether small or large.
    let small = referral("r-large", 1, 20, "\"e2\"");
    assert_eq!(
        store.upsert_referral(&small).await.unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(store.get_referral("r-large").await.unwrap(), Some(small));
    let mut newest = referral("r-large", 1, 30, "\"e3\"");
    newest.raw = large_raw("r-large", 'ü');
    assert_eq!(
        store.upsert_referral(&newest).await.unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(store.get_referral("r-large").await.unwrap(), Some(newest));
}

pub async fn payloads_are_kept_whole_by_key(store: &dyn Store) {
    assert_eq!(store.get_payload("ref-1").await.unwrap(), None);
    // Larger than two DynamoDB items, cut where characters are several bytes long.
    let large = "aé€😀".repeat(70_000);
    store.put_payload("ref-1", &large).await.unwrap();
    store.put_payload("ref-2", "small").await.unwrap();
    assert_eq!(store.get_payload("ref-1").await.unwrap(), Some(large));
    assert_eq!(
        store.get_payload("ref-2").await.unwrap().as_deref(),
        Some("small")
    );
    // A shorter text replaces a longer one whole.
    store.put_payload("ref-1", "shorter").await.unwrap();
    assert_eq!(
        store.get_payload("ref-1").await.unwrap().as_deref(),
        Some("shorter")
    );
    assert_eq!(store.get_payload("ref-3").await.unwrap(), None);
}
