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
