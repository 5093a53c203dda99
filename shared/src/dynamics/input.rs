//! The Hunter side of a push: a lead and its newest referral as [`MappingInput`] fields.

use crate::model::Lead;
use crate::referral::Referral;

use super::mapping::MappingInput;

/// Where pushed leads come from (the `source` field).
pub const SOURCE: &str = "PartnerCenter";

/// The mapping input of `lead`; contact, notes and currency come from `referral` (its newest).
pub fn lead_input(lead: &Lead, referral: Option<&Referral>) -> MappingInput {
    let mut input = MappingInput::default();
    let domain = lead.domain.as_str();
    input
        .set("domain", domain)
        .set("subject", format!("Hunter: {domain}"))
        .set("website_url", format!("https://{domain}"))
        .set("company_name", lead.company_name.clone())
        .set("deal_value", lead.deal_value_total)
        .set("score", lead.score)
        .set("priority", lead.priority)
        .set("provider", lead.provider.clone())
        .set("tenant_size", lead.tenant_size.clone())
        .set("segment", lead.segment.clone())
        .set("referral_ids", lead.referral_ids.join(","))
        .set("referral_count", lead.referral_count)
        .set("latest_status", lead.latest_status.clone())
        .set("source", SOURCE);
    if let Some(referral) = referral {
        input
            .set("referral_id", referral.id.clone())
            .set("notes", referral.notes.clone())
            .set("currency", referral.currency.clone());
        if let Some(contact) = referral
            .customer_contacts
            .iter()
            .find(|c| c.email.is_some())
            .or(referral.customer_contacts.first())
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
    use crate::dynamics::DynamicsMapping;
    use crate::referral::parse_referral_value;
    use crate::rules::normalize_domain;

    #[test]
    fn when_a_lead_and_its_referral_are_mapped_should_carry_contact_notes_and_totals() {
        let mut lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        lead.company_name = Some("Contoso Ltd".into());
        lead.deal_value_total = 1250.5;
        let referral = parse_referral_value(json!({
            "id": "r1", "details": {"notes": "40 mailboxes", "currency": "EUR"},
            "customerProfile": {"team": [{"firstName": "Ada", "email": "ada@contoso.com"}]},
            "team": [{"firstName": "Sam", "lastName": "Seller", "email": "sam@partner.example"}]
        }))
        .unwrap();

        let record = DynamicsMapping::embedded()
            .map(&lead_input(&lead, Some(&referral)))
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

/// The account, contact and opportunity of an accepted referral (status Active, substatus
/// Accepted), or `None` for any other referral.
pub fn opportunity_records(lead: &Lead, referral: &Referral) -> Option<super::OpportunityRecords> {
    let is = |value: &Option<String>, expected: &str| {
        value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    if !(is(&referral.status, "Active") && is(&referral.substatus, "Accepted")) {
        return None;
    }
    let domain = lead.domain.as_str();
    let company = lead
        .company_name
        .clone()
        .or_else(|| referral.customer_name.clone())
        .unwrap_or_else(|| domain.to_owned());
    let mut account = serde_json::Map::new();
    account.insert("name".to_owned(), cut(&company, 160).into());
    account.insert("websiteurl".to_owned(), format!("https://{domain}").into());
    let contact = referral.customer_contacts.iter().find_map(|c| {
        let email = c.email.as_deref()?.trim().to_lowercase();
        let mut record = serde_json::Map::new();
        record.insert("emailaddress1".to_owned(), cut(&email, 100).into());
        if let Some(first) = &c.first_name {
            record.insert("firstname".to_owned(), cut(first, 50).into());
        }
        record.insert(
            "lastname".to_owned(),
            cut(c.last_name.as_deref().unwrap_or(&company), 50).into(),
        );
        Some((email, record))
    });
    let mut opportunity = serde_json::Map::new();
    let name = referral
        .name
        .clone()
        .unwrap_or_else(|| format!("Hunter: {domain}"));
    opportunity.insert("name".to_owned(), cut(&name, 300).into());
    opportunity.insert("hnt_referralid".to_owned(), referral.id.clone().into());
    if let Some(value) = referral.deal_value.filter(|v| v.is_finite()) {
        opportunity.insert("estimatedvalue".to_owned(), value.into());
    }
    if let Some(notes) = &referral.notes {
        opportunity.insert("description".to_owned(), cut(notes, 2000).into());
    }
    Some(super::OpportunityRecords {
        account_key: domain.to_owned(),
        account,
        contact,
        opportunity_key: referral.id.clone(),
        opportunity,
    })
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
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
    fn when_a_referral_is_accepted_should_make_account_contact_and_opportunity() {
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        let referral = parse_referral_value(json!({
            "id": "r1", "name": "M365 migration", "status": "Active", "substatus": "Accepted",
            "details": {"dealValue": 50000, "notes": "x"},
            "customerProfile": {"name": "Contoso Ltd", "team": [{"firstName": "Ada", "email": "Ada@Contoso.com"}]}
        }))
        .unwrap();
        let records = opportunity_records(&lead, &referral).unwrap();
        assert_eq!(records.account_key, "contoso.com");
        assert_eq!(records.account["name"], "Contoso Ltd");
        let (key, contact) = records.contact.unwrap();
        assert_eq!(
            (key.as_str(), &contact["lastname"]),
            ("ada@contoso.com", &json!("Contoso Ltd"))
        );
        assert_eq!(records.opportunity_key, "r1");
        assert_eq!(records.opportunity["estimatedvalue"], 50000.0);
        assert_eq!(records.opportunity["name"], "M365 migration");
    }

    #[test]
    fn when_a_referral_is_not_accepted_should_make_nothing() {
        let lead = Lead::new(normalize_domain("contoso.com").unwrap(), Utc::now());
        for (status, substatus) in [("New", "Pending"), ("Active", "Engaged"), ("Closed", "Won")] {
            let referral =
                parse_referral_value(json!({"id": "r1", "status": status, "substatus": substatus}))
                    .unwrap();
            assert!(
                opportunity_records(&lead, &referral).is_none(),
                "{status}/{substatus}"
            );
        }
    }
}
