//! The Hunter side of a push: a lead and its newest referral as [`MappingInput`] fields, and the
//! account, contact and opportunity records of an accepted referral.

use crate::model::Lead;
use crate::referral::Referral;

use serde_json::{Map, Value};

use super::mapping::{DynamicsMapping, MappingError, MappingInput, TableMapping, map_columns};

/// One record of an accepted referral: its table, alternate-key value, columns and links.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub entity_set: String,
    pub key: String,
    pub record: Map<String, Value>,
    /// Navigation property to the account, if this record links to it.
    pub account_link: Option<String>,
    /// Navigation property to the contact, if this record links to it.
    pub contact_link: Option<String>,
}

impl Table {
    pub fn new(mapping: &TableMapping, key: String, record: Map<String, Value>) -> Self {
        Self {
            entity_set: mapping.entity_set.clone(),
            key,
            record,
            account_link: mapping.account_link.clone(),
            contact_link: mapping.contact_link.clone(),
        }
    }
}

/// The Dataverse records of an accepted referral.
#[derive(Debug, Clone, PartialEq)]
pub struct OpportunityRecords {
    pub account: Table,
    pub contact: Option<Table>,
    pub opportunity: Table,
}

/// Where pushed leads come from (the `source` field).
pub const SOURCE: &str = "PartnerCenter";

/// The mapping input of `lead`; contact, notes and currency come from `referral` (its newest).
/// The contact stays out when the customer did not consent to be contacted, unless `mapping`
/// says otherwise.
pub fn lead_input(
    lead: &Lead,
    referral: Option<&Referral>,
    mapping: &DynamicsMapping,
) -> MappingInput {
    let mut input = MappingInput::default();
    let domain = lead.domain.as_str();
    input
        .set("domain", domain)
        .set("subject", format!("Hunter: {domain}"))
        .set("website_url", format!("https://{domain}"))
        .set(
            "company_name",
            lead.company_name
                .clone()
                .or_else(|| referral.and_then(|r| r.customer_name.clone())),
        )
        .set("deal_value", lead.deal_value())
        .set("score", lead.score)
        .set("priority", lead.priority)
        .set("provider", lead.provider.clone())
        .set("tenant_size", lead.tenant_size.map(|t| t.as_str()))
        .set("segment", lead.segment.map(|s| s.as_str()))
        .set(
            "commercial_segment",
            lead.commercial_segment.map(|s| s.as_str()),
        )
        .set(
            "priority_category",
            lead.priority_category.map(|c| c.as_str()),
        )
        .set("referral_ids", lead.referral_ids.join(","))
        .set("referral_count", lead.referral_count)
        .set("latest_status", lead.latest_status().map(str::to_owned))
        .set("source", SOURCE);
    if let Some(referral) = referral {
        input
            .set("referral_id", referral.id.clone())
            .set("notes", referral.notes.clone())
            .set("currency", referral.currency.clone());
        let may_contact =
            referral.consent_to_contact != Some(false) || mapping.contacts_without_consent();
        if let Some(contact) = referral
            .customer_contacts
            .iter()
            .find(|c| c.email.is_some())
            .or(referral.customer_contacts.first())
            .filter(|_| may_contact)
        {
            input
                .set("contact_email", contact.email.clone())
                .set("contact_first_name", contact.first_name.clone())
                .set("contact_last_name", contact.last_name.clone());
        }
    }
    input
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::crm::DynamicsMapping;
    use crate::referral::parse_referral_value;
    use crate::rules::normalize_domain;

    #[test]
    fn when_a_scored_lead_is_mapped_should_carry_its_judgement_in_hunter_s_columns() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        lead.score = Some(85);
        lead.priority = Some(1);
        lead.provider = Some("Google".into());
        lead.tenant_size = Some(crate::scoring::TenantSize::Large);
        lead.segment = Some(crate::scoring::Segment::Migration);
        lead.priority_category = Some(crate::scoring::PriorityCategory::P2);

        let record = DynamicsMapping::embedded()
            .map(&lead_input(&lead, None, DynamicsMapping::embedded()))
            .unwrap();

        assert_eq!(record["hnt_finalscore"], 85);
        assert_eq!(record["hnt_priorityscore"], 1);
        assert_eq!(record["hnt_provider"], "Google");
        assert_eq!(
            record["hnt_huntertenantsize"], 816_940_002,
            "an option-set value"
        );
        assert_eq!(record["hnt_segment"], "Migration");
        assert_eq!(record["hnt_prioritycategory"], "P2");
        assert_eq!(record["leadsourcecode"], 4, "Partner, not the segment");
    }

    #[test]
    fn when_an_opportunity_exists_already_should_leave_its_stage_to_the_sellers() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        lead.score = Some(85);
        let referral = parse_referral_value(json!({
            "id": "r1", "status": "Active", "substatus": "Accepted",
            "customerProfile": {"name": "Contoso Ltd"}
        }))
        .unwrap();
        let stage = |new| {
            opportunity_records(DynamicsMapping::embedded(), &lead, &referral, new)
                .unwrap()
                .unwrap()
                .opportunity
                .record
                .get("stepname")
                .cloned()
        };
        assert_eq!(stage(true), Some(serde_json::Value::from("3-Propose")));
        assert_eq!(stage(false), None);
    }

    #[test]
    fn when_a_lead_and_its_referral_are_mapped_should_carry_contact_notes_and_totals() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        lead.company_name = Some("Contoso Ltd".into());
        lead.deal_values.insert(String::new(), 1250.5);
        let referral = parse_referral_value(json!({
            "id": "r1", "details": {"notes": "40 mailboxes", "currency": "EUR"},
            "customerProfile": {"team": [{"firstName": "Ada", "email": "ada@contoso.com"}]},
            "team": [{"firstName": "Sam", "lastName": "Seller", "email": "sam@partner.example"}]
        }))
        .unwrap();

        let record = DynamicsMapping::embedded()
            .map(&lead_input(
                &lead,
                Some(&referral),
                DynamicsMapping::embedded(),
            ))
            .unwrap();

        assert_eq!(record["subject"], "Hunter: contoso.com");
        assert_eq!(record["websiteurl"], "https://contoso.com");
        assert_eq!(
            record["emailaddress1"], "ada@contoso.com",
            "the customer, never the partner's team"
        );
        assert_eq!(record["firstname"], "Ada");
        assert_eq!(
            record["lastname"], "Contoso Ltd",
            "no last name: the company stands in"
        );
        assert_eq!(record["description"], "40 mailboxes");
        assert_eq!(record["estimatedamount"], 1250.5);
        assert_eq!(record["hnt_referralid"], "r1");
        assert_eq!(record["hnt_source"], SOURCE);
    }
}

/// The account, contact and opportunity records of an accepted referral (status Active,
/// substatus Accepted) as `mapping` names them; `None` for any other referral, or when the
/// mapping has no account or opportunity table. The score's opportunity stage is set on a
/// `new_opportunity` only: once it exists, sellers own its stage.
pub fn opportunity_records(
    mapping: &DynamicsMapping,
    lead: &Lead,
    referral: &Referral,
    new_opportunity: bool,
) -> Result<Option<OpportunityRecords>, MappingError> {
    let is = |value: &Option<String>, expected: &str| {
        value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    if !(is(&referral.status, "Active") && is(&referral.substatus, "Accepted")) {
        return Ok(None);
    }
    let Some((account_table, contact_table, opportunity_table)) = mapping.opportunity_tables()
    else {
        return Ok(None);
    };
    let mut input = lead_input(lead, Some(referral), mapping);
    input
        .set("referral_name", referral.name.clone())
        .set("deal_value", referral.deal_value.filter(|v| v.is_finite()));
    if let Some(stage) = lead
        .score
        .filter(|_| new_opportunity)
        .and_then(|score| mapping.opportunity_stage(score))
    {
        input.set("opportunity_stage", stage);
    }
    let email = input
        .get("contact_email")
        .and_then(|v| v.as_str())
        .map(|e| e.trim().to_lowercase());
    let contact = match (contact_table, email) {
        (Some(table), Some(email)) => Some(Table::new(
            table,
            email,
            map_columns(&table.column, &input)?,
        )),
        _ => None,
    };
    Ok(Some(OpportunityRecords {
        account: Table::new(
            account_table,
            lead.domain.to_string(),
            map_columns(&account_table.column, &input)?,
        ),
        contact,
        opportunity: Table::new(
            opportunity_table,
            referral.id.clone(),
            map_columns(&opportunity_table.column, &input)?,
        ),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod opportunity_tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::referral::parse_referral_value;
    use crate::rules::normalize_domain;

    #[test]
    fn when_an_org_renames_opportunity_columns_in_the_file_should_follow() {
        let file = r#"
            entity_set = "leads"
            key_column = "new_key"
            [[column]]
            name = "subject"
            source = "subject"
            [account]
            entity_set = "accounts"
            [[account.column]]
            name = "new_accountname"
            source = "company_name"
            [opportunity]
            entity_set = "new_deals"
            account_link = "new_account"
            [[opportunity.column]]
            name = "new_amount"
            source = "deal_value"
        "#;
        let mapping = DynamicsMapping::from_toml_str(file).unwrap();
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        let referral = parse_referral_value(json!({
            "id": "r1", "status": "Active", "substatus": "Accepted", "details": {"dealValue": 7},
            "customerProfile": {"name": "Contoso Ltd", "team": [{"email": "ada@contoso.com"}]}
        }))
        .unwrap();
        let records = opportunity_records(&mapping, &lead, &referral, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            records.account.record,
            json!({"new_accountname": "Contoso Ltd"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert!(records.contact.is_none(), "no contact table in this file");
        assert_eq!(records.opportunity.entity_set, "new_deals");
        assert_eq!(
            records.opportunity.account_link.as_deref(),
            Some("new_account")
        );
        assert_eq!(records.opportunity.record["new_amount"], 7.0);
    }

    #[test]
    fn when_the_customer_did_not_consent_to_contact_should_push_no_contact_unless_the_mapping_says_so()
     {
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        let referral = parse_referral_value(json!({
            "id": "r1", "name": "M365 migration", "status": "Active", "substatus": "Accepted",
            "consent": {"consentToContact": false, "consentToToShareInfoWithOthers": true},
            "details": {"dealValue": 50000, "notes": "x"},
            "customerProfile": {"name": "Contoso Ltd", "team": [{"firstName": "Ada", "email": "ada@contoso.com"}]}
        }))
        .unwrap();
        assert_eq!(referral.consent_to_contact, Some(false));
        let embedded = DynamicsMapping::embedded();

        let lead_record = embedded
            .map(&lead_input(&lead, Some(&referral), embedded))
            .unwrap();
        assert!(
            lead_record.get("emailaddress1").is_none(),
            "{lead_record:?}"
        );
        assert!(lead_record.get("firstname").is_none());
        let records = opportunity_records(embedded, &lead, &referral, true)
            .unwrap()
            .unwrap();
        assert!(
            records.contact.is_none(),
            "no contact record without consent"
        );
        assert_eq!(records.account.record["name"], "Contoso Ltd");

        let file = crate::crm::mapping::EMBEDDED_MAPPING_TOML.replace(
            "contacts_without_consent = false",
            "contacts_without_consent = true",
        );
        let permissive = DynamicsMapping::from_toml_str(&file).unwrap();
        let lead_record = permissive
            .map(&lead_input(&lead, Some(&referral), &permissive))
            .unwrap();
        assert_eq!(lead_record["emailaddress1"], "ada@contoso.com");
    }

    #[test]
    fn when_a_referral_is_accepted_should_make_account_contact_and_opportunity() {
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        let referral = parse_referral_value(json!({
            "id": "r1", "name": "M365 migration", "status": "Active", "substatus": "Accepted",
            "details": {"dealValue": 50000, "notes": "x"},
            "customerProfile": {"name": "Contoso Ltd", "team": [{"firstName": "Ada", "email": "Ada@Contoso.com"}]}
        }))
        .unwrap();
        let records = opportunity_records(DynamicsMapping::embedded(), &lead, &referral, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                records.account.entity_set.as_str(),
                records.account.key.as_str()
            ),
            ("accounts", "contoso.com")
        );
        assert_eq!(records.account.record["name"], "Contoso Ltd");
        let contact = records.contact.unwrap();
        assert_eq!(
            (contact.key.as_str(), &contact.record["lastname"]),
            ("ada@contoso.com", &json!("Contoso Ltd"))
        );
        assert_eq!(
            contact.account_link.as_deref(),
            Some("parentcustomerid_account")
        );
        assert_eq!(records.opportunity.key, "r1");
        assert_eq!(records.opportunity.record["estimatedvalue"], 50000.0);
        assert_eq!(records.opportunity.record["name"], "M365 migration");
        assert_eq!(
            records.opportunity.contact_link.as_deref(),
            Some("parentcontactid")
        );
    }

    #[test]
    fn when_a_referral_is_not_accepted_should_make_nothing() {
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        for (status, substatus) in [("New", "Pending"), ("Active", "Engaged"), ("Closed", "Won")] {
            let referral =
                parse_referral_value(json!({"id": "r1", "status": status, "substatus": substatus}))
                    .unwrap();
            assert!(
                opportunity_records(DynamicsMapping::embedded(), &lead, &referral, true)
                    .unwrap()
                    .is_none(),
                "{status}/{substatus}"
            );
        }
    }
}
