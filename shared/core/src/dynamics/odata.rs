//! Building Dataverse Web API URLs: identifiers, key segments, string literals, record ids.

use std::fmt::Write as _;

/// Entity-set and column names are identifiers; anything else would change the URL.
pub(super) fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An OData string literal for a URL: quotes doubled, then everything but unreserved characters
/// percent-encoded (so the doubled quotes travel as `%27%27`).
pub fn odata_string_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    let mut out = String::with_capacity(doubled.len() + 2);
    out.push('\'');
    for byte in doubled.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out.push('\'');
    out
}

/// The GUID inside the last parentheses of an `OData-EntityId` URL.
pub(super) fn entity_id(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let close = url[open..].find(')')? + open;
    let id = uuid::Uuid::parse_str(&url[open + 1..close]).ok()?;
    Some(id.to_string())
}

/// The primary-key column of an entity set (`leads` → `leadid`, `opportunities` → `opportunityid`).
pub(super) fn primary_key(entity_set: &str) -> String {
    let singular = if let Some(stem) = entity_set.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = entity_set.strip_suffix("sses") {
        format!("{stem}ss")
    } else {
        entity_set
            .strip_suffix('s')
            .unwrap_or(entity_set)
            .to_owned()
    };
    format!("{singular}id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_key_has_quotes_and_spaces_should_double_and_encode() {
        assert_eq!(odata_string_literal("contoso.com"), "'contoso.com'");
        assert_eq!(odata_string_literal("o'brien.com"), "'o%27%27brien.com'");
        assert_eq!(odata_string_literal("a b/c"), "'a%20b%2Fc'");
    }

    #[test]
    fn when_names_are_derived_should_follow_dataverse() {
        assert_eq!(primary_key("leads"), "leadid");
        assert_eq!(primary_key("opportunities"), "opportunityid");
        assert_eq!(primary_key("accounts"), "accountid");
        assert_eq!(
            entity_id("https://o/api/data/v9.2/leads(0000000A-0000-0000-0000-000000000001)")
                .as_deref(),
            Some("0000000a-0000-0000-0000-000000000001")
        );
        assert_eq!(entity_id("https://o/leads(nope)"), None);
        assert!(!is_identifier("leads(x)"));
        assert!(is_identifier("hnt_hunterkey"));
    }
}
