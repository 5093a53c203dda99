//! Referral ingestion rules against fixture payloads.
#![allow(clippy::unwrap_used)]

use hunter_domain::referral::{Referral, parse_referral};
use hunter_domain::rules::{
    DomainSource, Eligibility, Rules, SkipReason, VersionOrder, compare_versions, eligibility,
    extract_domain,
};

fn fixture(name: &str) -> &'static str {
    match name {
        "realistic" => include_str!("fixtures/referrals/realistic.json"),
        "consumer_contacts_external_url" => {
            include_str!("fixtures/referrals/consumer_contacts_external_url.json")
        }
        "consumer_contacts_no_ids" => {
            include_str!("fixtures/referrals/consumer_contacts_no_ids.json")
        }
        "ids_as_map_null_team" => include_str!("fixtures/referrals/ids_as_map_null_team.json"),
        "null_customer_profile" => include_str!("fixtures/referrals/null_customer_profile.json"),
        "website_only" => include_str!("fixtures/referrals/website_only.json"),
        "hostile" => include_str!("fixtures/referrals/hostile.json"),
        other => panic!("unknown fixture {other}"),
    }
}

/// Parses a fixture and runs extraction + eligibility with the embedded rules.
fn ingest(name: &str) -> (Referral, Option<(String, DomainSource)>, Eligibility) {
    let rules = Rules::default();
    let referral = parse_referral(fixture(name)).unwrap();
    let extracted = extract_domain(&referral, &rules);
    let verdict = eligibility(&referral, extracted.as_ref().map(|e| &e.domain), &rules);
    let found = extracted.map(|e| (e.domain.to_string(), e.source));
    (referral, found, verdict)
}

#[test]
fn when_realistic_referral_should_be_eligible_via_customer_email() {
    let (r, found, verdict) = ingest("realistic");
    assert_eq!(
        found,
        Some(("contoso.com".into(), DomainSource::CustomerEmail))
    );
    assert_eq!(verdict, Eligibility::Eligible);
    assert_eq!(r.id, "2f1c6b7e-3a55-4c1e-9a0b-1d2e3f405162");
    assert_eq!(
        r.engagement_id.as_deref(),
        Some("8d6a2c11-0f3e-4b8e-a1c2-3d4e5f607182")
    );
    assert_eq!(r.referral_type.as_deref(), Some("Shared"));
    assert_eq!(r.qualification.as_deref(), Some("SalesQualified"));
    assert_eq!(r.customer_name.as_deref(), Some("Contoso Ltd"));
    assert_eq!(r.customer_country.as_deref(), Some("US"));
    assert_eq!(r.deal_value, Some(50000.0));
    assert_eq!(r.currency.as_deref(), Some("USD"));
    assert_eq!(r.notes.as_deref(), Some("Wants to move 40 mailboxes"));
    assert_eq!(
        r.etag.as_deref(),
        Some("\"84001c9d-0000-0100-0000-6225a63e0000\"")
    );
    assert_eq!(r.created.unwrap().timestamp_subsec_nanos(), 875_490_100);
    assert_eq!(
        r.updated.unwrap().to_rfc3339(),
        "2026-10-29T08:01:12.120+00:00"
    );
    assert_eq!(r.customer_contacts.len(), 1);
    assert_eq!(r.customer_contacts[0].phone.as_deref(), Some("+1 555 0100"));
    assert_eq!(
        r.customer_contacts[0].last_name.as_deref(),
        Some("Lovelace")
    );
    assert_eq!(r.customer_ids.len(), 2);
    assert_eq!(raw(&r)["consent"]["consentToToShareInfoWithOthers"], true);
}

#[test]
fn when_customer_contacts_all_consumer_should_use_external_id_url_with_path() {
    let (r, found, verdict) = ingest("consumer_contacts_external_url");
    assert_eq!(
        found,
        Some(("contoso.com".into(), DomainSource::ExternalId))
    );
    assert_eq!(verdict, Eligibility::Eligible);
    assert_eq!(r.deal_value, Some(12500.5));
    assert_eq!(r.created.unwrap().timestamp_subsec_nanos(), 123_456_700);
}

#[test]
fn when_customer_contacts_all_consumer_and_no_ids_should_skip_no_domain() {
    let (r, found, verdict) = ingest("consumer_contacts_no_ids");
    assert!(r.customer_ids.is_empty());
    assert_eq!(found, None);
    assert_eq!(verdict, Eligibility::Skipped(SkipReason::NoDomain));
}

#[test]
fn when_partner_team_has_company_email_should_never_yield_domain() {
    for name in ["consumer_contacts_no_ids", "null_customer_profile"] {
        let (r, found, _) = ingest(name);
        assert_eq!(raw(&r)["team"][0]["email"], "sam@fabrikam-partners.com");
        assert_eq!(found, None, "{name}");
    }
}

#[test]
fn when_ids_is_map_should_use_external_idn_domain() {
    let (_, found, verdict) = ingest("ids_as_map_null_team");
    assert_eq!(
        found,
        Some(("xn--bcher-kva.de".into(), DomainSource::ExternalId))
    );
    assert_eq!(verdict, Eligibility::Eligible);
}

#[test]
fn when_customer_profile_is_null_should_skip_no_domain() {
    let (_, found, verdict) = ingest("null_customer_profile");
    assert_eq!(found, None);
    assert_eq!(verdict, Eligibility::Skipped(SkipReason::NoDomain));
}

#[test]
fn when_only_website_field_should_use_registrable_domain() {
    let (r, found, verdict) = ingest("website_only");
    assert_eq!(
        raw(&r)["customerProfile"]["WebSiteUrl"],
        "HTTPS://Shop.Mail.Contoso.co.uk./en?x=1"
    );
    assert_eq!(found, Some(("contoso.co.uk".into(), DomainSource::Website)));
    assert_eq!(verdict, Eligibility::Eligible);
}

#[test]
fn when_hostile_payload_should_keep_text_and_find_no_domain() {
    let (r, found, verdict) = ingest("hostile");
    assert_eq!(r.id, "<script>alert(1)</script>");
    assert_eq!(r.name.as_deref(), Some("<img src=x onerror=alert(1)>"));
    assert_eq!(
        r.notes.as_deref(),
        Some("line1\r\nline2\u{0}\u{7}\u{1b}[31m red")
    );
    assert_eq!(r.customer_name.as_deref(), Some("\u{202e}evil"));
    assert_eq!(r.deal_value, None);
    assert_eq!(r.updated, None);
    assert_eq!(found, None);
    assert_eq!(verdict, Eligibility::Skipped(SkipReason::NoDomain));
}

#[test]
fn when_redelivered_out_of_order_should_compare_versions() {
    let base = parse_referral(fixture("realistic")).unwrap();
    assert_eq!(
        compare_versions(&base.version(), &base.version()),
        VersionOrder::Same
    );

    let mut changed = base.clone();
    changed.etag = Some("\"other\"".into());
    assert_eq!(
        compare_versions(&changed.version(), &base.version()),
        VersionOrder::Newer
    );

    let mut older = base.clone();
    older.updated = base.created;
    assert_eq!(
        compare_versions(&older.version(), &base.version()),
        VersionOrder::Stale
    );
    assert_eq!(
        compare_versions(&base.version(), &older.version()),
        VersionOrder::Newer
    );
}

#[test]
fn when_status_changes_should_report_each_skip_reason() {
    let rules = Rules::default();
    let base = parse_referral(fixture("realistic")).unwrap();
    let domain = extract_domain(&base, &rules).map(|e| e.domain);

    let mut r = base.clone();
    r.direction = Some("Outgoing".into());
    assert_eq!(
        eligibility(&r, domain.as_ref(), &rules),
        Eligibility::Skipped(SkipReason::NotIncoming)
    );

    let mut r = base.clone();
    r.status = Some("Closed".into());
    r.substatus = Some("Won".into());
    assert_eq!(
        eligibility(&r, domain.as_ref(), &rules),
        Eligibility::Skipped(SkipReason::StatusClosed)
    );

    let mut r = base.clone();
    r.substatus = Some("Declined".into());
    assert_eq!(
        eligibility(&r, domain.as_ref(), &rules),
        Eligibility::Skipped(SkipReason::SubstatusExcluded)
    );

    assert_eq!(
        eligibility(&base, None, &rules),
        Eligibility::Skipped(SkipReason::NoDomain)
    );
    assert_eq!(
        "invalid_payload".parse::<SkipReason>().unwrap(),
        SkipReason::InvalidPayload
    );
}

/// The payload a referral was read from, as JSON.
fn raw(r: &Referral) -> serde_json::Value {
    serde_json::from_str(&r.raw).unwrap()
}
