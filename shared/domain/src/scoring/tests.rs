//! The rules of docs/reference/hunter-rules.md ("DNS scan signals", "Score", "Segment",
//! "Priority", "Commercial segment") row by row. Expected values are written out from the
//! reference, never computed by the code under test.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::rules::{EMBEDDED_RULES_TOML, Rules, RulesError};
use crate::scan::{DmarcPolicy, MxRecord, Signals};

use CommercialSegment::{Competitive, Greenfield, LowIntent, NoGo, Renewal, WeakPartner};
use Heat::{High, Low, Medium};
use Segment::{Cold, Existing, Migration, Skip};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Signals of a domain whose only MX is `mx`, with no SPF, DKIM or DMARC yet.
fn mail(mx: &str) -> Mail {
    Mail(Signals {
        mx: vec![MxRecord {
            preference: 10,
            host: mx.to_owned(),
        }],
        ..Signals::default()
    })
}

#[derive(Clone)]
struct Mail(Signals);

impl Mail {
    /// An SPF record with `includes` include: terms.
    fn spf(mut self, includes: usize) -> Self {
        self.0.spf_includes = (0..includes)
            .map(|i| format!("_spf{i}.example.net"))
            .collect();
        let terms: Vec<String> = self
            .0
            .spf_includes
            .iter()
            .map(|t| format!("include:{t}"))
            .collect();
        self.0.spf = Some(format!("v=spf1 {} -all", terms.join(" ")));
        self
    }

    fn dkim(mut self) -> Self {
        self.0.dkim = true;
        self.0.dkim_selectors = vec!["selector1".to_owned()];
        self
    }

    fn dmarc(mut self, policy: DmarcPolicy) -> Self {
        self.0.dmarc_policy = Some(policy);
        self.0.dmarc_coverage = Some(100);
        self
    }

    /// SPF (one include), DKIM and DMARC reject.
    fn strong(self) -> Self {
        self.spf(1).dkim().dmarc(DmarcPolicy::Reject)
    }
}

fn input(state: ScanState, signals: &Signals) -> ScoreInput<'_> {
    ScoreInput {
        state,
        signals,
        co_sell: false,
        azure_tenant: false,
    }
}

fn assess_with(rules: &ScoringRules, mail: &Mail, co_sell: bool, azure_tenant: bool) -> Assessment {
    let input = ScoreInput {
        co_sell,
        azure_tenant,
        ..input(ScanState::Ok, &mail.0)
    };
    assess(&input, rules).unwrap()
}

/// An `ok` scan assessed with the embedded rules.
fn assess_ok(mail: &Mail) -> Assessment {
    assess_with(&ScoringRules::default(), mail, false, false)
}

fn lines(assessment: &Assessment) -> Vec<(&str, i32)> {
    assessment
        .breakdown
        .iter()
        .map(|l| (l.label.as_str(), l.points))
        .collect()
}

fn points_sum(assessment: &Assessment) -> i32 {
    assessment.breakdown.iter().map(|l| l.points).sum()
}

/// The ingestion sections of a rules file written before scoring existed.
const INGESTION_ONLY_TOML: &str = r#"
[eligibility]
incoming_directions = ["Incoming"]
eligible_statuses = ["New", "Active"]
excluded_substatuses = ["Declined"]
[extraction]
external_id_profile_types = ["External"]
website_fields = ["website"]
[consumer_domains]
domains = ["gmail.com"]
"#;

/// The embedded rules with the first `from` replaced by `to` (which must be there).
fn embedded_with(from: &str, to: &str) -> String {
    assert!(
        EMBEDDED_RULES_TOML.contains(from),
        "the embedded rules no longer contain {from:?}"
    );
    EMBEDDED_RULES_TOML.replacen(from, to, 1)
}

fn scoring_of(toml: &str) -> ScoringRules {
    Rules::from_toml_str(toml).unwrap().scoring().clone()
}

const CO_SELL_ON: &str = r#"
[scoring.co_sell_bonus]
enabled = true
label = "Co-sell referral bonus"
points = 15
"#;

const AZURE_TENANT_ON: &str = r#"
[scoring.azure_tenant]
enabled = true
provider = "M365"
label = "Customer Azure tenant (M365)"
"#;

// ---------------------------------------------------------------------------------------------
// Provider

#[test]
fn when_the_preferred_mx_has_a_known_root_should_give_its_provider_and_points() {
    // With SPF (+10) and DKIM (+10) and no DMARC record, so the score is the points + 20.
    let rows: &[(&str, &str, &str, i32, u8)] = &[
        (
            "contoso-com.mail.protection.outlook.com",
            "M365",
            "Microsoft 365 mail (M365)",
            50,
            70,
        ),
        (
            "contoso-com.olc.protection.outlook.com",
            "M365",
            "Microsoft 365 mail (M365)",
            50,
            70,
        ),
        (
            "outlook.office365.com",
            "M365",
            "Microsoft 365 mail (M365)",
            50,
            70,
        ),
        (
            "aspmx.l.google.com",
            "Google",
            "Google Workspace mail (Google)",
            50,
            70,
        ),
        (
            "alt1.aspmx.l.google.com",
            "Google",
            "Google Workspace mail (Google)",
            50,
            70,
        ),
        (
            "gmail-smtp-in.l.google.com",
            "Google",
            "Google Workspace mail (Google)",
            50,
            70,
        ),
        ("mx.yandex.net", "Yandex", "Yandex mail (Yandex)", 30, 50),
        ("mx.yandex.ru", "Yandex", "Yandex mail (Yandex)", 30, 50),
        ("mx.zoho.eu", "Zoho", "Zoho Mail (Zoho)", 30, 50),
        ("mx.zoho.com", "Zoho", "Zoho Mail (Zoho)", 30, 50),
        ("mx2.zoho.in", "Zoho", "Zoho Mail (Zoho)", 30, 50),
        (
            "inbound-smtp.eu-west-1.amazonaws.com",
            "Amazon",
            "Amazon SES / WorkMail (Amazon)",
            20,
            40,
        ),
        // us-east-1.amazonaws.com is itself a public suffix: the root lies under amazonaws.com.
        (
            "inbound-smtp.us-east-1.amazonaws.com",
            "Amazon",
            "Amazon SES / WorkMail (Amazon)",
            20,
            40,
        ),
        (
            "feedback-smtp.eu-west-1.amazonses.com",
            "Amazon",
            "Amazon SES / WorkMail (Amazon)",
            20,
            40,
        ),
        (
            "mx.sendgrid.net",
            "SendGrid",
            "SendGrid mail service (SendGrid)",
            20,
            40,
        ),
        (
            "mxa.mailgun.org",
            "Mailgun",
            "Mailgun mail service (Mailgun)",
            20,
            40,
        ),
        (
            "mxb.eu.mailgun.com",
            "Mailgun",
            "Mailgun mail service (Mailgun)",
            20,
            40,
        ),
        (
            "mx1.hostinger.com",
            "Hosting",
            "Web hosting mail (Hosting)",
            20,
            40,
        ),
        (
            "box1234.bluehost.com",
            "Hosting",
            "Web hosting mail (Hosting)",
            20,
            40,
        ),
        (
            "mail.contoso.de",
            "Local",
            "Own or local mail server (Local)",
            10,
            30,
        ),
        (
            "MAIL.Contoso.co.uk.",
            "Local",
            "Own or local mail server (Local)",
            10,
            30,
        ),
        (
            "outlook.com.mx.contoso.de",
            "Local",
            "Own or local mail server (Local)",
            10,
            30,
        ),
        // No registrable root: an address, a name on no public suffix, the null MX ".".
        (
            "192.0.2.25",
            "Unknown",
            "No mail server found (Unknown)",
            0,
            20,
        ),
        (
            "mail.contoso.internal",
            "Unknown",
            "No mail server found (Unknown)",
            0,
            20,
        ),
        ("", "Unknown", "No mail server found (Unknown)", 0, 20),
    ];
    for &(mx, provider, label, points, score) in rows {
        let assessment = assess_ok(&mail(mx).spf(1).dkim());
        assert_eq!(assessment.provider, provider, "{mx}");
        assert_eq!(
            lines(&assessment),
            [(label, points), ("SPF record", 10), ("DKIM signing", 10)],
            "{mx}"
        );
        assert_eq!(assessment.score, score, "{mx}");
    }
}

#[test]
fn when_an_ok_scan_has_no_mx_host_should_be_unknown() {
    let assessment = assess_ok(&Mail(Signals::default()).spf(0).dkim());
    assert_eq!(assessment.provider, "Unknown");
    assert_eq!(
        assessment.breakdown[0].label,
        "No mail server found (Unknown)"
    );
    assert_eq!(assessment.score, 20);
}

#[test]
fn when_several_mx_answer_should_use_the_lowest_preference() {
    let mut signals = mail("aspmx.l.google.com").spf(1).dkim();
    signals.0.mx = vec![
        MxRecord {
            preference: 20,
            host: "aspmx.l.google.com".to_owned(),
        },
        MxRecord {
            preference: 5,
            host: "mail.contoso.de".to_owned(),
        },
    ];
    assert_eq!(assess_ok(&signals).provider, "Local");
}

// ---------------------------------------------------------------------------------------------
// Tenant size

#[test]
fn when_the_provider_is_m365_or_google_should_read_the_tenant_size_from_the_mx_host() {
    use TenantSize::{Large, Medium as Mid, Small};
    let rows: &[(&str, Option<TenantSize>)] = &[
        ("contoso-com.mail.protection.outlook.com", Some(Large)),
        ("contoso-com.olc.protection.outlook.com", Some(Small)),
        ("eur01.protection.outlook.com", Some(Small)),
        ("contoso.nam02.protection.outlook.com", Some(Small)),
        ("contoso-com.mail.eo.outlook.com", Some(Mid)),
        ("outlook.office365.com", Some(Mid)),
        ("aspmx.l.google.com", Some(Mid)),
        ("alt2.aspmx.l.google.com", Some(Mid)),
        ("smtp.google.com", Some(Large)),
        ("gmail-smtp-in.l.google.com", Some(Large)),
        ("mx.googlemail.com", Some(Large)),
        ("mx.zoho.eu", None),
        ("mx.yandex.net", None),
        ("mx1.hostinger.com", None),
        ("mail.contoso.de", None),
    ];
    for &(mx, size) in rows {
        assert_eq!(assess_ok(&mail(mx)).tenant_size, size, "{mx}");
    }
}

// ---------------------------------------------------------------------------------------------
// Score: signals, risks, clamp

#[test]
fn when_signals_and_risks_apply_should_give_one_line_each_in_rule_order() {
    const M365: (&str, i32) = ("Microsoft 365 mail (M365)", 50);
    const HOSTING: (&str, i32) = ("Web hosting mail (Hosting)", 20);
    const GOOGLE: (&str, i32) = ("Google Workspace mail (Google)", 50);
    const SPF: (&str, i32) = ("SPF record", 10);
    const DKIM: (&str, i32) = ("DKIM signing", 10);
    const NO_SPF: (&str, i32) = ("No SPF", -10);
    const NO_DKIM: (&str, i32) = ("No DKIM", -15);
    let m365 = || mail("contoso-com.mail.protection.outlook.com");
    let hosting = || mail("mx1.hostinger.com");
    type Lines = Vec<(&'static str, i32)>;
    let rows: Vec<(&str, Mail, Lines, u8)> = vec![
        ("nothing", m365(), vec![M365, NO_SPF, NO_DKIM], 25),
        ("SPF only", m365().spf(1), vec![M365, SPF, NO_DKIM], 45),
        ("DKIM only", m365().dkim(), vec![M365, DKIM, NO_SPF], 50),
        (
            "SPF and DKIM, no DMARC record",
            m365().spf(1).dkim(),
            vec![M365, SPF, DKIM],
            70,
        ),
        (
            "DMARC quarantine",
            m365().spf(1).dkim().dmarc(DmarcPolicy::Quarantine),
            vec![M365, SPF, DKIM, ("DMARC policy: quarantine", 15)],
            85,
        ),
        (
            "DMARC reject",
            m365().spf(1).dkim().dmarc(DmarcPolicy::Reject),
            vec![M365, SPF, DKIM, ("DMARC policy: reject", 20)],
            90,
        ),
        (
            "DMARC p=none: a 0 signal and the -10 risk",
            m365().spf(1).dkim().dmarc(DmarcPolicy::None),
            vec![
                M365,
                SPF,
                DKIM,
                ("DMARC policy: none (monitoring only)", 0),
                ("DMARC not enforced (p=none)", -10),
            ],
            60,
        ),
        (
            "3 SPF includes",
            m365().spf(3).dkim(),
            vec![M365, SPF, DKIM],
            70,
        ),
        (
            "4 SPF includes",
            m365().spf(4).dkim(),
            vec![M365, SPF, DKIM, ("More than 3 SPF includes", -5)],
            65,
        ),
        (
            "hosting with neither SPF nor DKIM",
            hosting(),
            vec![
                HOSTING,
                NO_SPF,
                NO_DKIM,
                ("Hosting mail with neither SPF nor DKIM", -10),
                ("Score floor (a score is never below 0)", 15),
            ],
            0,
        ),
        (
            "hosting with SPF",
            hosting().spf(1),
            vec![HOSTING, SPF, NO_DKIM],
            15,
        ),
        (
            "hosting with DKIM",
            hosting().dkim(),
            vec![HOSTING, DKIM, NO_SPF],
            20,
        ),
        (
            "Google with neither",
            mail("aspmx.l.google.com"),
            vec![GOOGLE, NO_SPF, NO_DKIM],
            25,
        ),
    ];
    for (name, signals, expected, score) in rows {
        let assessment = assess_ok(&signals);
        assert_eq!(lines(&assessment), expected, "{name}");
        assert_eq!(assessment.score, score, "{name}");
        assert_eq!(points_sum(&assessment), i32::from(score), "{name}");
    }
}

#[test]
fn when_dmarc_covers_part_of_the_mail_should_score_the_policy_alone() {
    let mut partial = mail("mail.contoso.de")
        .spf(1)
        .dkim()
        .dmarc(DmarcPolicy::Quarantine);
    partial.0.dmarc_coverage = Some(25);
    assert_eq!(assess_ok(&partial).score, 45);
}

#[test]
fn when_the_sum_is_below_0_should_clamp_with_a_line_for_the_difference() {
    // Amazon 20, no SPF -10, no DKIM -15: -5.
    let assessment = assess_ok(&mail("inbound-smtp.eu-west-1.amazonaws.com"));
    assert_eq!(
        lines(&assessment),
        [
            ("Amazon SES / WorkMail (Amazon)", 20),
            ("No SPF", -10),
            ("No DKIM", -15),
            ("Score floor (a score is never below 0)", 5),
        ]
    );
    assert_eq!(assessment.score, 0);
}

#[test]
fn when_the_co_sell_bonus_takes_the_sum_above_100_should_clamp_with_a_line() {
    let rules = scoring_of(&format!("{INGESTION_ONLY_TOML}{CO_SELL_ON}"));
    let assessment = assess_with(
        &rules,
        &mail("contoso-com.mail.protection.outlook.com").strong(),
        true,
        false,
    );
    assert_eq!(
        lines(&assessment),
        [
            ("Microsoft 365 mail (M365)", 50),
            ("SPF record", 10),
            ("DKIM signing", 10),
            ("DMARC policy: reject", 20),
            ("Co-sell referral bonus", 15),
            ("Score ceiling (a score is never above 100)", -5),
        ]
    );
    assert_eq!(assessment.score, 100);
}

#[test]
fn when_any_lead_is_scored_should_have_lines_adding_up_to_the_score() {
    let rules_on = scoring_of(&format!(
        "{INGESTION_ONLY_TOML}{CO_SELL_ON}{AZURE_TENANT_ON}"
    ));
    let hosts = [
        "contoso-com.mail.protection.outlook.com",
        "aspmx.l.google.com",
        "mx.yandex.net",
        "mx.zoho.eu",
        "inbound-smtp.eu-west-1.amazonaws.com",
        "mx.sendgrid.net",
        "mxa.mailgun.org",
        "mx1.hostinger.com",
        "mail.contoso.de",
        "",
    ];
    let policies = [
        None,
        Some(DmarcPolicy::None),
        Some(DmarcPolicy::Quarantine),
        Some(DmarcPolicy::Reject),
    ];
    let mut checked = 0;
    for host in hosts {
        for spf in [None, Some(1), Some(5)] {
            for dkim in [false, true] {
                for policy in policies {
                    let mut signals = mail(host);
                    if let Some(includes) = spf {
                        signals = signals.spf(includes);
                    }
                    if dkim {
                        signals = signals.dkim();
                    }
                    if let Some(policy) = policy {
                        signals = signals.dmarc(policy);
                    }
                    for rules in [&ScoringRules::default(), &rules_on] {
                        for flag in [false, true] {
                            let a = assess_with(rules, &signals, flag, flag);
                            assert_eq!(points_sum(&a), i32::from(a.score), "{host} {a:?}");
                            assert!(a.score <= 100);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 10 * 3 * 2 * 4 * 2 * 2);
}

// ---------------------------------------------------------------------------------------------
// Co-sell bonus and Azure tenant: off by default, on by the rules file

#[test]
fn when_the_co_sell_bonus_is_off_should_add_nothing_for_a_co_sell_lead() {
    assert!(!ScoringRules::default().co_sell_bonus_enabled());
    let assessment = assess_with(
        &ScoringRules::default(),
        &mail("mail.contoso.de").strong(),
        true,
        false,
    );
    assert_eq!(assessment.score, 50);
    assert!(!lines(&assessment).contains(&("Co-sell referral bonus", 15)));
}

#[test]
fn when_the_co_sell_bonus_is_on_should_add_15_to_co_sell_leads_only() {
    let rules = scoring_of(&format!("{INGESTION_ONLY_TOML}{CO_SELL_ON}"));
    assert!(rules.co_sell_bonus_enabled());
    let local = mail("mail.contoso.de").strong();

    let co_sell = assess_with(&rules, &local, true, false);
    assert_eq!(
        co_sell.breakdown.last().unwrap().label,
        "Co-sell referral bonus"
    );
    assert_eq!(co_sell.breakdown.last().unwrap().points, 15);
    // Local 10 + SPF 10 + DKIM 10 + reject 20 + 15 = 65: a Local lead at 60+ is Migration.
    assert_eq!(co_sell.score, 65);
    assert_eq!(co_sell.segment, Migration);
    assert_eq!(co_sell.priority, 3);

    let other = assess_with(&rules, &local, false, false);
    assert_eq!(other.score, 50);
    assert_eq!(other.segment, Cold);
}

#[test]
fn when_the_azure_tenant_rule_is_off_should_keep_the_mx_provider() {
    assert!(!ScoringRules::default().azure_tenant_rule_enabled());
    let assessment = assess_with(
        &ScoringRules::default(),
        &mail("mail.contoso.de").strong(),
        false,
        true,
    );
    assert_eq!(assessment.provider, "Local");
    assert_eq!(assessment.tenant_size, None);
}

#[test]
fn when_the_azure_tenant_rule_is_on_should_make_a_tenant_lead_m365() {
    let rules = scoring_of(&format!("{INGESTION_ONLY_TOML}{AZURE_TENANT_ON}"));
    assert!(rules.azure_tenant_rule_enabled());
    let local = mail("mail.contoso.de").strong();

    let tenant = assess_with(&rules, &local, false, true);
    assert_eq!(tenant.provider, "M365");
    assert_eq!(
        lines(&tenant),
        [
            ("Customer Azure tenant (M365)", 50),
            ("SPF record", 10),
            ("DKIM signing", 10),
            ("DMARC policy: reject", 20),
        ]
    );
    assert_eq!(tenant.score, 90);
    assert_eq!(tenant.segment, Existing);
    assert_eq!(
        tenant.tenant_size,
        Some(TenantSize::Medium),
        "other M365 → medium"
    );

    let no_tenant = assess_with(&rules, &local, false, false);
    assert_eq!(no_tenant.provider, "Local");

    // The MX says M365 already: its own line and tenant size.
    let m365 = assess_with(
        &rules,
        &mail("contoso-com.mail.protection.outlook.com"),
        false,
        true,
    );
    assert_eq!(m365.breakdown[0].label, "Microsoft 365 mail (M365)");
    assert_eq!(m365.tenant_size, Some(TenantSize::Large));
}

// ---------------------------------------------------------------------------------------------
// Scan states

fn no_mail_assessment(label: &str) -> Assessment {
    Assessment {
        provider: "Unknown".to_owned(),
        tenant_size: None,
        score: 0,
        breakdown: vec![ScoreLine {
            label: label.to_owned(),
            points: 0,
        }],
        segment: Skip,
        priority: 7,
        commercial_segment: NoGo,
        commercial_heat: Low,
        priority_category: PriorityCategory::P6,
        priority_category_label: "No-Go / Archive".to_owned(),
        seller_action: "archive, no outreach".to_owned(),
    }
}

#[test]
fn when_the_domain_has_no_mx_should_score_0_and_skip() {
    // Whatever else the scan saw (an SPF record, DKIM keys) does not count without mail.
    let signals = Mail(Signals::default()).strong();
    let assessment = assess(
        &input(ScanState::NoMx, &signals.0),
        &ScoringRules::default(),
    );
    assert_eq!(
        assessment,
        Some(no_mail_assessment(
            "No MX records: the domain receives no mail"
        ))
    );
}

#[test]
fn when_the_domain_does_not_exist_should_score_0_and_skip() {
    let signals = Signals::default();
    let assessment = assess(
        &input(ScanState::Nxdomain, &signals),
        &ScoringRules::default(),
    );
    assert_eq!(
        assessment,
        Some(no_mail_assessment("The domain does not exist (NXDOMAIN)"))
    );
}

#[test]
fn when_the_scan_failed_or_has_not_run_should_not_assess() {
    let signals = mail("contoso-com.mail.protection.outlook.com").strong();
    for state in [ScanState::Servfail, ScanState::Timeout, ScanState::Pending] {
        assert_eq!(
            assess(&input(state, &signals.0), &ScoringRules::default()),
            None,
            "{state:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Segment, priority, commercial segment, heat, priority category

#[test]
fn when_provider_and_score_are_classified_should_give_the_first_matching_segment() {
    let rows: &[(&str, u8, Segment)] = &[
        // 1. Existing: M365, any score.
        ("M365", 0, Existing),
        ("M365", 39, Existing),
        ("M365", 100, Existing),
        // 2. Migration: 60+ on Google, Yandex, Zoho, Hosting, Local.
        ("Google", 60, Migration),
        ("Google", 59, Cold),
        ("Yandex", 60, Migration),
        ("Zoho", 100, Migration),
        ("Hosting", 60, Migration),
        ("Local", 60, Migration),
        ("Local", 59, Cold),
        ("Amazon", 60, Skip),
        ("SendGrid", 80, Skip),
        ("Mailgun", 100, Skip),
        ("Unknown", 60, Skip),
        // 3. Cold: Local with 5..59.
        ("Local", 4, Skip),
        ("Local", 5, Cold),
        ("Local", 39, Cold),
        // 4. Cold: 40..59.
        ("Google", 40, Cold),
        ("Google", 39, Skip),
        ("Amazon", 59, Cold),
        ("Mailgun", 40, Cold),
        ("Hosting", 59, Cold),
        ("Unknown", 40, Cold),
        // 5. Skip: 39 and below (and anything unmatched).
        ("Hosting", 39, Skip),
        ("Hosting", 5, Skip),
        ("Yandex", 0, Skip),
    ];
    let rules = ScoringRules::default();
    for &(provider, score, segment) in rows {
        assert_eq!(
            rules.segment(provider, score),
            segment,
            "{provider} {score}"
        );
    }
}

#[test]
fn when_a_score_is_in_a_segment_should_get_the_priority_of_its_table() {
    let rows: &[(Segment, u8, u8)] = &[
        (Migration, 100, 1),
        (Migration, 80, 1),
        (Migration, 79, 2),
        (Migration, 70, 2),
        (Migration, 69, 3),
        (Migration, 60, 3),
        (Migration, 59, 4),
        (Migration, 0, 4),
        (Existing, 100, 3),
        (Existing, 70, 3),
        (Existing, 69, 4),
        (Existing, 50, 4),
        (Existing, 49, 5),
        (Existing, 30, 5),
        (Existing, 29, 6),
        (Existing, 0, 6),
        (Cold, 59, 5),
        (Cold, 40, 5),
        (Cold, 39, 6),
        (Cold, 20, 6),
        (Cold, 19, 7),
        (Cold, 0, 7),
        (Skip, 100, 7),
        (Skip, 0, 7),
    ];
    let rules = ScoringRules::default();
    for &(segment, score, priority) in rows {
        assert_eq!(
            rules.priority(segment, score),
            priority,
            "{segment} {score}"
        );
    }
}

#[test]
fn when_a_lead_is_classified_should_give_the_first_matching_commercial_segment() {
    let rows: &[(Segment, &str, u8, CommercialSegment)] = &[
        // GREENFIELD: Migration with Local/Hosting, or Cold with Local and 5..59.
        (Migration, "Local", 60, Greenfield),
        (Migration, "Hosting", 85, Greenfield),
        (Cold, "Local", 5, Greenfield),
        (Cold, "Local", 19, Greenfield),
        (Cold, "Local", 59, Greenfield),
        (Cold, "Local", 4, NoGo),
        // COMPETITIVE: Migration with Google/Zoho/Yandex.
        (Migration, "Google", 60, Competitive),
        (Migration, "Zoho", 79, Competitive),
        (Migration, "Yandex", 100, Competitive),
        // WEAK_PARTNER: Existing ≤ 69; RENEWAL: Existing ≥ 70.
        (Existing, "M365", 0, WeakPartner),
        (Existing, "M365", 69, WeakPartner),
        (Existing, "M365", 70, Renewal),
        (Existing, "M365", 100, Renewal),
        // LOW_INTENT: Cold with 20..59.
        (Cold, "Google", 20, LowIntent),
        (Cold, "Amazon", 40, LowIntent),
        (Cold, "Hosting", 59, LowIntent),
        // NO_GO: Skip, or Cold with ≤ 19.
        (Cold, "Google", 19, NoGo),
        (Cold, "Unknown", 0, NoGo),
        (Skip, "Google", 39, NoGo),
        (Skip, "M365", 100, NoGo),
        (Skip, "Local", 4, NoGo),
        // Unmatched.
        (Migration, "Amazon", 60, NoGo),
    ];
    let rules = ScoringRules::default();
    for &(segment, provider, score, commercial) in rows {
        assert_eq!(
            rules.commercial_segment(segment, provider, score),
            commercial,
            "{segment} {provider} {score}"
        );
    }
}

#[test]
fn when_a_commercial_segment_has_a_score_should_get_its_heat() {
    let rows: &[(CommercialSegment, u8, Heat)] = &[
        (Greenfield, 5, High),
        (Greenfield, 100, High),
        (Competitive, 60, High),
        (WeakPartner, 69, High),
        (WeakPartner, 50, High),
        (WeakPartner, 49, Medium),
        (WeakPartner, 0, Medium),
        (Renewal, 70, Medium),
        (Renewal, 100, Medium),
        (LowIntent, 59, Low),
        (LowIntent, 20, Low),
        (NoGo, 0, Low),
        (NoGo, 100, Low),
    ];
    let rules = ScoringRules::default();
    for &(commercial, score, heat) in rows {
        assert_eq!(rules.heat(commercial, score), heat, "{commercial} {score}");
    }
}

#[test]
fn when_a_commercial_segment_is_known_should_give_its_priority_category() {
    use PriorityCategory::{P1, P2, P3, P4, P5, P6};
    let rows: &[(CommercialSegment, PriorityCategory, &str, &str)] = &[
        (
            Greenfield,
            P1,
            "High Potential Greenfield",
            "act within 48 h",
        ),
        (Competitive, P2, "Competitive Takeover", "act within 3 days"),
        (
            WeakPartner,
            P3,
            "Existing Microsoft but Weak Partner",
            "5-day nurture",
        ),
        (Renewal, P4, "Renewal Pressure", "soft nurture"),
        (
            LowIntent,
            P5,
            "Low Intent / Long Nurturing",
            "monthly nurture",
        ),
        (NoGo, P6, "No-Go / Archive", "archive, no outreach"),
    ];
    let rules = ScoringRules::default();
    for &(commercial, category, label, action) in rows {
        let info = rules.priority_category(commercial);
        assert_eq!(
            (
                info.category,
                info.label.as_str(),
                info.seller_action.as_str()
            ),
            (category, label, action),
            "{commercial}"
        );
    }
}

#[test]
fn when_real_scans_are_assessed_should_give_the_whole_verdict() {
    type Verdict = (
        &'static str,
        u8,
        Segment,
        u8,
        CommercialSegment,
        Heat,
        PriorityCategory,
    );
    use PriorityCategory::{P1, P2, P3, P4, P5, P6};
    let m365 = || mail("contoso-com.mail.protection.outlook.com");
    let google = || mail("aspmx.l.google.com");
    let rows: Vec<(&str, Mail, Verdict)> = vec![
        (
            "M365 strong",
            m365().strong(),
            ("M365", 90, Existing, 3, Renewal, Medium, P4),
        ),
        (
            "M365 bare",
            m365(),
            ("M365", 25, Existing, 6, WeakPartner, Medium, P3),
        ),
        (
            "M365 busy SPF",
            m365().spf(4).dkim(),
            ("M365", 65, Existing, 4, WeakPartner, High, P3),
        ),
        (
            "Google strong",
            google().strong(),
            ("Google", 90, Migration, 1, Competitive, High, P2),
        ),
        (
            "Google p=none",
            google().spf(1).dkim().dmarc(DmarcPolicy::None),
            ("Google", 60, Migration, 3, Competitive, High, P2),
        ),
        (
            "Zoho strong",
            mail("mx.zoho.eu").strong(),
            ("Zoho", 70, Migration, 2, Competitive, High, P2),
        ),
        (
            "Hosting strong",
            mail("mx1.hostinger.com").strong(),
            ("Hosting", 60, Migration, 3, Greenfield, High, P1),
        ),
        (
            "Local strong",
            mail("mail.contoso.de").strong(),
            ("Local", 50, Cold, 5, Greenfield, High, P1),
        ),
        (
            "Local DKIM only",
            mail("mail.contoso.de").dkim(),
            ("Local", 10, Cold, 7, Greenfield, High, P1),
        ),
        (
            "Local bare",
            mail("mail.contoso.de"),
            ("Local", 0, Skip, 7, NoGo, Low, P6),
        ),
        (
            "Amazon strong",
            mail("inbound-smtp.eu-west-1.amazonaws.com").strong(),
            ("Amazon", 60, Skip, 7, NoGo, Low, P6),
        ),
        (
            "SendGrid SPF and DKIM",
            mail("mx.sendgrid.net").spf(2).dkim(),
            ("SendGrid", 40, Cold, 5, LowIntent, Low, P5),
        ),
    ];
    for (name, signals, expected) in rows {
        let a = assess_ok(&signals);
        assert_eq!(
            (
                a.provider.as_str(),
                a.score,
                a.segment,
                a.priority,
                a.commercial_segment,
                a.commercial_heat,
                a.priority_category
            ),
            expected,
            "{name}"
        );
    }
}

#[test]
fn when_an_assessment_is_serialized_should_use_camel_case_and_the_reference_names() {
    let assessment = assess_ok(&mail("aspmx.l.google.com").strong());
    let value = serde_json::to_value(&assessment).unwrap();
    assert_eq!(
        value,
        json!({
            "provider": "Google",
            "tenantSize": "medium",
            "score": 90,
            "breakdown": [
                {"label": "Google Workspace mail (Google)", "points": 50},
                {"label": "SPF record", "points": 10},
                {"label": "DKIM signing", "points": 10},
                {"label": "DMARC policy: reject", "points": 20},
            ],
            "segment": "Migration",
            "priority": 1,
            "commercialSegment": "COMPETITIVE",
            "commercialHeat": "HIGH",
            "priorityCategory": "P2",
            "priorityCategoryLabel": "Competitive Takeover",
            "sellerAction": "act within 3 days",
        })
    );
    let back: Assessment = serde_json::from_value(value).unwrap();
    assert_eq!(back, assessment);
    assert_eq!(
        assessment.priority_summary(),
        "P2 Competitive Takeover — act within 3 days"
    );
    for (value, text) in [
        (serde_json::to_value(WeakPartner).unwrap(), "WEAK_PARTNER"),
        (serde_json::to_value(LowIntent).unwrap(), "LOW_INTENT"),
        (serde_json::to_value(NoGo).unwrap(), "NO_GO"),
        (serde_json::to_value(Existing).unwrap(), "Existing"),
        (serde_json::to_value(TenantSize::Small).unwrap(), "small"),
        (serde_json::to_value(Medium).unwrap(), "MEDIUM"),
    ] {
        assert_eq!(value, json!(text));
    }
}

// ---------------------------------------------------------------------------------------------
// The rules file

#[test]
fn when_a_rules_file_has_no_scoring_should_score_with_the_embedded_rules() {
    let rules = Rules::from_toml_str(INGESTION_ONLY_TOML).unwrap();
    assert_eq!(rules.scoring(), Rules::embedded().scoring());
    assert_eq!(rules.scoring(), &ScoringRules::default());
}

#[test]
fn when_an_override_changes_google_points_should_score_with_them() {
    let toml = embedded_with(
        "name = \"Google\"\nlabel = \"Google Workspace mail (Google)\"\npoints = 50",
        "name = \"Google\"\nlabel = \"Google Workspace mail (Google)\"\npoints = 40",
    );
    let rules = scoring_of(&toml);
    assert_eq!(rules.provider_points("Google"), Some(40));
    let assessment = assess_with(&rules, &mail("aspmx.l.google.com").strong(), false, false);
    assert_eq!(
        assessment.breakdown[0],
        ScoreLine {
            label: "Google Workspace mail (Google)".to_owned(),
            points: 40
        }
    );
    assert_eq!(assessment.score, 80);
    assert_eq!(assessment.priority, 1);
    // The embedded rules are untouched.
    assert_eq!(ScoringRules::default().provider_points("Google"), Some(50));
}

#[test]
fn when_an_override_has_one_scoring_section_should_take_the_others_from_the_embedded_file() {
    let toml = format!(
        "{INGESTION_ONLY_TOML}
[scoring.priorities]
Migration = [{{ min_score = 0, priority = 2 }}]
Existing = [{{ min_score = 0, priority = 1 }}]
Cold = [{{ min_score = 0, priority = 6 }}]
Skip = [{{ min_score = 0, priority = 7 }}]
"
    );
    let rules = scoring_of(&toml);
    assert_eq!(rules.priority(Existing, 10), 1);
    assert_eq!(rules.priority(Migration, 95), 2);
    assert_eq!(rules.provider_points("M365"), Some(50));
    assert_eq!(rules.segment("Google", 60), Migration);
}

#[test]
fn when_a_scoring_value_is_unusable_should_refuse_the_file_saying_why() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "{ segment = \"Migration\", min_score = 60, providers = [\"Google\"",
            "{ segment = \"Migration\", min_score = 60, providers = [\"Gogle\"",
            "scoring.segments.rules[1].providers: unknown provider \"Gogle\"",
        ),
        (
            "label = \"Co-sell referral bonus\"\npoints = 15",
            "label = \"Co-sell referral bonus\"\npoints = 101",
            "scoring.co_sell_bonus.points = 101 is outside -100..=100",
        ),
        (
            "label = \"No DKIM\"\npoints = -15",
            "label = \"No DKIM\"\npoints = -150",
            "scoring.score_rules[6].points = -150 is outside -100..=100",
        ),
        (
            "label = \"Yandex mail (Yandex)\"\npoints = 30",
            "label = \"Yandex mail (Yandex)\"\npoints = 130",
            "scoring.providers.table[2].points = 130",
        ),
        (
            "{ min_score = 80, priority = 1 }",
            "{ min_score = 80, priority = 8 }",
            "scoring.priorities.Migration: min_score 80 must be within 0..=100 and priority 8",
        ),
        (
            "Skip = [{ min_score = 0, priority = 7 }]",
            "Skip = [{ min_score = 10, priority = 7 }]",
            "scoring.priorities.Skip needs a row with min_score = 0",
        ),
        (
            "Skip = [{ min_score = 0, priority = 7 }]",
            "",
            "scoring.priorities.Skip is missing",
        ),
        (
            "{ segment = \"Cold\", min_score = 40, max_score = 59 }",
            "{ segment = \"Cold\", min_score = 60, max_score = 59 }",
            "scoring.segments.rules[3]: min_score 60 and max_score 59",
        ),
        (
            "{ segment = \"Skip\", max_score = 39 }",
            "{ segment = \"Skip\", max_score = 139 }",
            "scoring.segments.rules[4]: min_score 0 and max_score 139",
        ),
        (
            "mx_roots = [\"google.com\",",
            "mx_roots = [\"outlook.com\", \"google.com\",",
            "outlook.com is already a root of M365",
        ),
        (
            "mx_roots = [\"sendgrid.net\"]",
            "mx_roots = [\"mx.sendgrid.net\"]",
            "\"mx.sendgrid.net\" is not a registrable domain",
        ),
        (
            "{ pattern = \"olc.protection.outlook.com\"",
            "{ pattern = \"olc..outlook.com\"",
            "scoring.tenant_sizes[0].hosts: host pattern \"olc..outlook.com\" has an empty label",
        ),
        (
            "[[scoring.tenant_sizes]]\nprovider = \"Google\"",
            "[[scoring.tenant_sizes]]\nprovider = \"Gmail\"",
            "scoring.tenant_sizes[1].provider: unknown provider \"Gmail\"",
        ),
        (
            "other_mx = \"Local\"",
            "other_mx = \"Own\"",
            "scoring.providers.other_mx: unknown provider \"Own\"",
        ),
        (
            "enabled = false\nprovider = \"M365\"",
            "enabled = false\nprovider = \"Microsoft\"",
            "scoring.azure_tenant.provider: unknown provider \"Microsoft\"",
        ),
        (
            "when = { providers = [\"Hosting\"], spf = false, dkim = false }",
            "when = { }",
            "scoring.score_rules[8].when has no condition",
        ),
        (
            "{ heat = \"LOW\", commercial_segments = [\"LOW_INTENT\", \"NO_GO\"] }",
            "{ heat = \"LOW\", commercial_segments = [] }",
            "scoring.heat.rules[4].commercial_segments: an empty list matches nothing",
        ),
        (
            "NO_GO = { category = \"P6\"",
            "# NO_GO = { category = \"P6\"",
            "scoring.priority_categories.NO_GO is missing",
        ),
        (
            "label = \"SPF record\"",
            "label = \"  \"",
            "scoring.score_rules[0].label must not be empty",
        ),
    ];
    for &(from, to, message) in rows {
        match Rules::from_toml_str(&embedded_with(from, to)) {
            Err(RulesError::Invalid(text)) => {
                assert!(text.contains(message), "{text:?} does not say {message:?}");
            }
            other => panic!("{to:?}: expected RulesError::Invalid, got {other:?}"),
        }
    }
}

#[test]
fn when_a_scoring_key_or_name_is_unknown_should_refuse_the_toml() {
    let rows = [
        // An unknown key (deny_unknown_fields).
        embedded_with(
            "[scoring.co_sell_bonus]\n",
            "[scoring.co_sell_bonus]\nbonus = 1\n",
        ),
        format!("{INGESTION_ONLY_TOML}[scoring.bonus]\nenabled = true\n"),
        // A segment, commercial segment or tenant size that does not exist.
        embedded_with(
            "{ segment = \"Skip\", max_score = 39 }",
            "{ segment = \"Ignore\" }",
        ),
        embedded_with("otherwise = \"NO_GO\"", "otherwise = \"NOGO\""),
        embedded_with("otherwise = \"medium\"", "otherwise = \"Medium\""),
        // A score that is not a 0..255 integer.
        embedded_with(
            "{ segment = \"Skip\", max_score = 39 }",
            "{ segment = \"Skip\", max_score = -1 }",
        ),
    ];
    for toml in rows {
        assert!(
            matches!(Rules::from_toml_str(&toml), Err(RulesError::Toml(_))),
            "accepted: {}",
            toml.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        );
    }
}

#[test]
fn when_the_rules_load_from_a_file_should_score_with_its_scoring() {
    let path = std::env::temp_dir().join(format!("hunter-scoring-{}.toml", std::process::id()));
    std::fs::write(&path, format!("{INGESTION_ONLY_TOML}{CO_SELL_ON}")).unwrap();
    let loaded = Rules::load(Some(&path));
    std::fs::remove_file(&path).unwrap();
    assert!(loaded.unwrap().scoring().co_sell_bonus_enabled());
}
