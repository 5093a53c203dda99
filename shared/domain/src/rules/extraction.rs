//! Company-domain extraction from a referral's customer profile (first hit wins).

use super::config::Rules;
use super::domain::{Domain, domain_from_url_or_host, email_domain};
use crate::referral::Referral;
use serde::{Deserialize, Serialize};

/// Where the company domain came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainSource {
    /// `customerProfile.team[].email`.
    CustomerEmail,
    /// `customerProfile.ids[]` with profileType External.
    ExternalId,
    /// A website/URL field of `customerProfile`.
    Website,
}

impl DomainSource {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DomainSource::CustomerEmail => "customer_email",
            DomainSource::ExternalId => "external_id",
            DomainSource::Website => "website",
        }
    }
}

/// A company domain and its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExtractedDomain {
    /// The registrable domain.
    pub domain: Domain,
    /// Where it was found.
    pub source: DomainSource,
}

/// Finds the customer's company domain, first hit wins:
/// (1) customer contact e-mail, (2) External profile id, (3) customer website field.
/// Consumer domains are never returned; the top-level `team` (partner's people) is never used.
pub fn extract_domain(referral: &Referral, rules: &Rules) -> Option<ExtractedDomain> {
    let company = |d: Domain| (!rules.is_consumer_domain(&d)).then_some(d);

    let from_email = referral
        .customer_contacts
        .iter()
        .filter_map(|c| c.email.as_deref())
        .find_map(|e| email_domain(e).ok().and_then(company));
    if let Some(domain) = from_email {
        return Some(ExtractedDomain {
            domain,
            source: DomainSource::CustomerEmail,
        });
    }

    let from_id = referral
        .customer_ids
        .iter()
        .filter(|id| rules.is_external_profile_type(&id.profile_type))
        .find_map(|id| domain_from_url_or_host(&id.id).ok().and_then(company));
    if let Some(domain) = from_id {
        return Some(ExtractedDomain {
            domain,
            source: DomainSource::ExternalId,
        });
    }

    let from_website = website_values(referral, rules)
        .find_map(|w| domain_from_url_or_host(w).ok().and_then(company));
    from_website.map(|domain| ExtractedDomain {
        domain,
        source: DomainSource::Website,
    })
}

/// Website-ish string values of `customerProfile`, in the rules' field order (field names are
/// lowercase in the rules; a payload's key matches whatever its ASCII case).
fn website_values<'a>(referral: &'a Referral, rules: &'a Rules) -> impl Iterator<Item = &'a str> {
    rules.website_fields().iter().flat_map(move |field| {
        referral
            .profile_texts
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(field))
            .flat_map(|(_, values)| values.iter().map(String::as_str))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::referral::parse_referral_value;
    use serde_json::{Value, json};

    fn extract(value: Value) -> Option<(String, DomainSource)> {
        let referral = parse_referral_value(value).unwrap();
        extract_domain(&referral, &Rules::default()).map(|e| (e.domain.to_string(), e.source))
    }

    #[test]
    fn when_customer_email_is_company_should_use_it_first() {
        let got = extract(json!({"id": "1", "customerProfile": {
            "team": [{"email": "ada@mail.contoso.co.uk"}],
            "ids": [{"profileType": "External", "id": "fabrikam.com"}],
            "website": "https://northwind.com"
        }}));
        assert_eq!(
            got,
            Some(("contoso.co.uk".into(), DomainSource::CustomerEmail))
        );
    }

    #[test]
    fn when_first_contact_is_consumer_should_use_next_company_contact() {
        let got = extract(json!({"id": "1", "customerProfile": {"team": [
            {"email": "ada@gmail.com"}, {"email": "not an email"}, {"email": null},
            {"email": "bob@contoso.com"}
        ]}}));
        assert_eq!(
            got,
            Some(("contoso.com".into(), DomainSource::CustomerEmail))
        );
    }

    #[test]
    fn when_all_contacts_consumer_should_fall_back_to_external_id() {
        let got = extract(json!({"id": "1", "customerProfile": {
            "team": [{"email": "ada@hotmail.fr"}, {"email": "bob@yahoo.co.jp"}],
            "ids": [{"profileType": "Duns", "id": "123456789"}, {"profileType": "external", "id": "https://www.contoso.com/about/us"}]
        }}));
        assert_eq!(got, Some(("contoso.com".into(), DomainSource::ExternalId)));
    }

    #[test]
    fn when_external_id_is_consumer_should_skip_it() {
        let got = extract(json!({"id": "1", "customerProfile": {
            "ids": [{"profileType": "External", "id": "gmail.com"}],
            "websiteUrl": "contoso.com/about"
        }}));
        assert_eq!(got, Some(("contoso.com".into(), DomainSource::Website)));
    }

    #[test]
    fn when_website_key_varies_in_case_should_match() {
        for key in ["website", "WebSite", "websiteUrl", "URL", "domain"] {
            let got =
                extract(json!({"id": "1", "customerProfile": {key: "https://www.contoso.com/"}}));
            assert_eq!(
                got,
                Some(("contoso.com".into(), DomainSource::Website)),
                "{key}"
            );
        }
    }

    #[test]
    fn when_only_partner_team_has_company_email_should_find_nothing() {
        let got = extract(json!({"id": "1",
            "team": [{"firstName": "Sam", "email": "sam@fabrikam-partners.com"}],
            "customerProfile": {"name": "Contoso", "team": [{"email": "ada@outlook.com"}]}
        }));
        assert_eq!(got, None);
    }

    #[test]
    fn when_customer_profile_is_null_should_find_nothing() {
        assert_eq!(extract(json!({"id": "1", "customerProfile": null})), None);
        assert_eq!(
            extract(json!({"id": "1", "customerProfile": "contoso.com"})),
            None
        );
    }

    #[test]
    fn when_rules_name_other_website_fields_should_read_only_those() {
        let embedded = crate::rules::EMBEDDED_RULES_TOML;
        let start = embedded.find("website_fields = [").unwrap();
        let end = start + embedded[start..].find(']').unwrap() + 1;
        let narrowed = Rules::from_toml_str(&format!(
            "{}website_fields = [\"intranetHome\"]{}",
            &embedded[..start],
            &embedded[end..]
        ))
        .unwrap();
        let referral = parse_referral_value(json!({"id": "1", "customerProfile": {
            "website": "https://contoso.com", "IntranetHome": "https://www.fabrikam.com/x"
        }}))
        .unwrap();
        let got = extract_domain(&referral, &narrowed).unwrap();
        assert_eq!(got.domain.as_str(), "fabrikam.com");
        assert_eq!(got.source, DomainSource::Website);
        let only_website = parse_referral_value(
            json!({"id": "1", "customerProfile": {"website": "https://contoso.com"}}),
        )
        .unwrap();
        assert_eq!(
            extract_domain(&only_website, &narrowed),
            None,
            "a field the configured rules do not name is not read"
        );
        assert_eq!(
            extract_domain(&only_website, &Rules::default()).map(|e| e.domain.to_string()),
            Some("contoso.com".to_owned())
        );
    }

    #[test]
    fn when_source_serialized_should_be_snake_case() {
        assert_eq!(
            serde_json::to_string(&DomainSource::CustomerEmail).unwrap(),
            "\"customer_email\""
        );
        assert_eq!(
            serde_json::to_string(&DomainSource::ExternalId).unwrap(),
            "\"external_id\""
        );
        assert_eq!(DomainSource::Website.as_str(), "website");
    }
}
