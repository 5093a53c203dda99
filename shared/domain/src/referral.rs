//! Tolerant reader for Microsoft Partner Center referrals.
//!
//! Only a missing id, non-JSON, a non-object or an oversized payload make input invalid; every
//! other field is optional and ignored when null, missing or of the wrong type.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rules::versioning::Version;

mod read;

/// Largest accepted referral payload, in bytes of JSON text: a bound on hostile input, well above
/// any real referral (one too large for a queue message travels by reference, see
/// `hunter_core::messages`).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Appended by [`cap_text`] when text was cut.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// A referral as read tolerantly from Microsoft's JSON. Every field optional except id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referral {
    /// `id` (a number id is kept as its decimal string).
    pub id: String,
    /// `engagementId`.
    pub engagement_id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `status` (New, Active, Closed, ...), verbatim.
    pub status: Option<String>,
    /// `substatus`, verbatim.
    pub substatus: Option<String>,
    /// `type` (Shared, Independent).
    pub referral_type: Option<String>,
    /// `qualification`.
    pub qualification: Option<String>,
    /// `direction` (Incoming, Outgoing).
    pub direction: Option<String>,
    /// `customerProfile.name`.
    pub customer_name: Option<String>,
    /// `customerProfile.address.country`.
    pub customer_country: Option<String>,
    /// `details.dealValue` (a number or a numeric string).
    pub deal_value: Option<f64>,
    /// `details.currency`.
    pub currency: Option<String>,
    /// `details.notes`.
    pub notes: Option<String>,
    /// `externalReferenceId`: the CRM record a partner's system wrote back.
    pub external_reference_id: Option<String>,
    /// `createdDateTime`.
    pub created: Option<DateTime<Utc>>,
    /// `updatedDateTime`.
    pub updated: Option<DateTime<Utc>>,
    /// `eTag`, verbatim (including quotes).
    pub etag: Option<String>,
    /// `customerProfile.team` (the customer's people).
    pub customer_contacts: Vec<Contact>,
    /// `consent.consentToContact`: `Some(false)` when the customer did not agree to be contacted.
    pub consent_to_contact: Option<bool>,
    /// `customerProfile.ids` (array, single object or `{profileType: id}` map).
    pub customer_ids: Vec<ProfileId>,
    /// The other keys of `customerProfile` with their string values (a string, or the strings
    /// of an array), in the payload's order: where a website may be named.
    pub profile_texts: Vec<(String, Vec<String>)>,
    /// The whole payload as received (JSON text).
    pub raw: String,
}

/// A customer contact from `customerProfile.team`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    /// `firstName`.
    pub first_name: Option<String>,
    /// `lastName`.
    pub last_name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `phoneNumber` (or `phone`).
    pub phone: Option<String>,
}

/// An entry of `customerProfile.ids`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProfileId {
    /// `profileType` (Duns, External, ...), verbatim.
    pub profile_type: String,
    /// `id`.
    pub id: String,
}

/// Why input cannot be read as a referral (skip reason `invalid_payload`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPayload {
    /// The text is not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("payload is not a JSON object")]
    NotAnObject,
    /// The object has no non-empty `id`.
    #[error("referral has no id")]
    MissingId,
    /// The payload exceeds [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {bytes} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge {
        /// Size of the payload.
        bytes: usize,
    },
}

impl Referral {
    /// Whether Partner Center already names `crm_id` as this referral's CRM record (a write-back
    /// of it would change nothing).
    pub fn references(&self, crm_id: &str) -> bool {
        self.external_reference_id.as_deref() == Some(crm_id)
    }

    /// The version used to order deliveries (`updatedDateTime`, `eTag`).
    pub fn version(&self) -> Version {
        Version {
            updated: self.updated,
            etag: self.etag.clone(),
        }
    }
}

/// Parses a referral from JSON text, in one pass: no `Value` is built, strings are borrowed
/// until a field keeps them, and `raw` is the text itself.
pub fn parse_referral(text: &str) -> Result<Referral, InvalidPayload> {
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(InvalidPayload::TooLarge { bytes: text.len() });
    }
    let read::Top(fields) =
        serde_json::from_str(text).map_err(|e| InvalidPayload::NotJson(e.to_string()))?;
    let fields = fields.ok_or(InvalidPayload::NotAnObject)?;
    let id = match fields.id {
        Some(read::Leaf::Str(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(read::Leaf::Num(n)) => n.to_string(),
        _ => return Err(InvalidPayload::MissingId),
    };
    let profile = fields.profile;
    Ok(Referral {
        id,
        engagement_id: fields.engagement_id,
        name: fields.name,
        status: fields.status,
        substatus: fields.substatus,
        referral_type: fields.referral_type,
        qualification: fields.qualification,
        direction: fields.direction,
        customer_name: profile.name,
        customer_country: profile.country,
        deal_value: fields.details.deal_value,
        currency: fields.details.currency,
        notes: fields.details.notes,
        external_reference_id: fields.external_reference_id,
        created: fields.created,
        updated: fields.updated,
        etag: fields.etag.or(fields.etag_lower).or(fields.odata_etag),
        customer_contacts: profile.contacts,
        consent_to_contact: fields.consent_to_contact,
        customer_ids: profile.ids,
        profile_texts: profile.texts,
        raw: text.to_owned(),
    })
}

/// Parses a referral from a JSON value (as its compact text: see [`parse_referral`]).
pub fn parse_referral_value(value: Value) -> Result<Referral, InvalidPayload> {
    parse_referral(&value.to_string())
}

/// The `updatedDateTime` of a referral's JSON text, without keeping the rest; `None` for input
/// [`parse_referral`] would refuse (no id, too large, not an object, not JSON).
pub fn updated_date_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    let read::Object(stamp) = serde_json::from_str::<read::Object<read::Stamp>>(text).ok()?;
    stamp.filter(|s| s.has_id)?.updated
}

/// Text stored for invalid input: capped to `max_bytes` on a char boundary, with a marker when cut.
///
/// The result never exceeds `max_bytes`; the marker is omitted when it does not fit.
pub fn cap_text(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let (budget, marker) = if max_bytes >= TRUNCATION_MARKER.len() {
        (max_bytes - TRUNCATION_MARKER.len(), TRUNCATION_MARKER)
    } else {
        (max_bytes, "")
    };
    let mut end = budget;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + marker.len());
    out.push_str(&text[..end]);
    out.push_str(marker);
    out
}

/// Deterministic id for input that has none: `"invalid-"` + first 16 hex of sha256(text).
pub fn invalid_payload_id(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut id = String::with_capacity(8 + 16);
    id.push_str("invalid-");
    for byte in digest.iter().take(8) {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// A digest naming `text` by its content: the first 16 bytes of its SHA-256, in hex.
pub fn content_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A Partner Center time: RFC 3339 with any number of fractional digits; a zone-less time is
/// taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Referral {
        parse_referral_value(value).unwrap()
    }

    #[test]
    fn when_not_json_should_be_invalid() {
        assert!(matches!(
            parse_referral("{not json"),
            Err(InvalidPayload::NotJson(_))
        ));
        assert!(matches!(
            parse_referral(""),
            Err(InvalidPayload::NotJson(_))
        ));
    }

    #[test]
    fn when_not_an_object_should_be_invalid() {
        assert_eq!(
            parse_referral("[{\"id\":\"1\"}]"),
            Err(InvalidPayload::NotAnObject)
        );
        assert_eq!(parse_referral("\"id\""), Err(InvalidPayload::NotAnObject));
        assert_eq!(parse_referral("null"), Err(InvalidPayload::NotAnObject));
    }

    #[test]
    fn when_id_missing_empty_or_wrong_type_should_be_invalid() {
        for body in [
            r#"{}"#,
            r#"{"id":""}"#,
            r#"{"id":"   "}"#,
            r#"{"id":null}"#,
            r#"{"id":{}}"#,
            r#"{"id":true}"#,
        ] {
            assert_eq!(
                parse_referral(body),
                Err(InvalidPayload::MissingId),
                "{body}"
            );
        }
    }

    #[test]
    fn when_id_is_number_should_accept_as_string() {
        assert_eq!(parse_referral(r#"{"id":12345}"#).unwrap().id, "12345");
        assert_eq!(parse_referral(r#"{"id":" abc "}"#).unwrap().id, "abc");
    }

    #[test]
    fn when_payload_too_large_should_be_invalid() {
        let big = format!(
            r#"{{"id":"1","notes":"{}"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        assert_eq!(
            parse_referral(&big),
            Err(InvalidPayload::TooLarge { bytes: big.len() })
        );
        let value: Value = serde_json::from_str(&big).unwrap();
        assert!(matches!(
            parse_referral_value(value),
            Err(InvalidPayload::TooLarge { .. })
        ));
    }

    #[test]
    fn when_a_real_referral_is_300_kb_should_parse_and_above_1_mib_stay_invalid() {
        let notes = "x".repeat(300 * 1024);
        let big = json!({"id": "big", "status": "New", "details": {"notes": notes}});
        let text = big.to_string();
        let parsed = parse_referral(&text).unwrap();
        assert_eq!(
            (parsed.id.as_str(), parsed.status.as_deref()),
            ("big", Some("New"))
        );
        assert_eq!(parsed.raw, text);
        assert_eq!(parse_referral_value(big).unwrap().id, "big");
        let huge = json!({"id": "huge", "details": {"notes": "x".repeat(1024 * 1024)}});
        assert!(matches!(
            parse_referral(&huge.to_string()),
            Err(InvalidPayload::TooLarge { .. })
        ));
    }

    #[test]
    fn when_invalid_payload_should_have_clear_message() {
        assert_eq!(InvalidPayload::MissingId.to_string(), "referral has no id");
        assert!(
            InvalidPayload::TooLarge { bytes: 300_000 }
                .to_string()
                .contains("300000")
        );
    }

    #[test]
    fn when_fields_have_wrong_types_should_ignore_them() {
        let r = parse(json!({
            "id": "1", "status": 7, "substatus": ["x"], "direction": {"a": 1}, "name": true,
            "createdDateTime": 12, "updatedDateTime": "yesterday", "eTag": null,
            "details": "none", "customerProfile": {"team": "ada@contoso.com", "ids": 5, "name": null}
        }));
        assert_eq!(r.status.as_deref(), Some("7"));
        assert_eq!(r.substatus, None);
        assert_eq!(r.direction, None);
        assert_eq!(r.name, None);
        assert_eq!(r.created, None);
        assert_eq!(r.updated, None);
        assert_eq!(r.etag, None);
        assert_eq!(r.deal_value, None);
        assert!(r.customer_contacts.is_empty());
        assert!(r.customer_ids.is_empty());
        assert_eq!(r.customer_name, None);
    }

    #[test]
    fn when_deal_value_is_string_should_parse_number() {
        assert_eq!(
            parse(json!({"id": "1", "details": {"dealValue": "50000.5"}})).deal_value,
            Some(50000.5)
        );
        assert_eq!(
            parse(json!({"id": "1", "details": {"dealValue": 42}})).deal_value,
            Some(42.0)
        );
        assert_eq!(
            parse(json!({"id": "1", "details": {"dealValue": "lots"}})).deal_value,
            None
        );
        assert_eq!(
            parse(json!({"id": "1", "details": {"dealValue": "NaN"}})).deal_value,
            None
        );
    }

    #[test]
    fn when_timestamp_has_seven_fraction_digits_should_parse() {
        let r = parse(
            json!({"id": "1", "createdDateTime": "2026-10-28T17:27:47.8754901Z",
            "updatedDateTime": "2026-10-29T08:01:12.12+02:00"}),
        );
        let created = r.created.unwrap();
        assert_eq!(created.to_rfc3339(), "2026-10-28T17:27:47.875490100+00:00");
        assert_eq!(
            r.updated.unwrap().to_rfc3339(),
            "2026-10-29T06:01:12.120+00:00"
        );
        let naive = parse(json!({"id": "1", "updatedDateTime": "2026-10-29T08:01:12.1234567"}));
        assert_eq!(naive.updated.unwrap().timestamp_subsec_nanos(), 123_456_700);
    }

    #[test]
    fn when_ids_is_empty_object_should_have_no_ids() {
        assert!(
            parse(json!({"id": "1", "customerProfile": {"ids": {}}}))
                .customer_ids
                .is_empty()
        );
    }

    #[test]
    fn when_ids_is_map_or_single_object_should_read_them() {
        let r = parse(
            json!({"id": "1", "customerProfile": {"ids": {"External": "contoso.com", "Duns": 123, "x": null}}}),
        );
        assert!(r.customer_ids.contains(&ProfileId {
            profile_type: "External".into(),
            id: "contoso.com".into()
        }));
        assert!(r.customer_ids.contains(&ProfileId {
            profile_type: "Duns".into(),
            id: "123".into()
        }));
        assert_eq!(r.customer_ids.len(), 2);
        let r = parse(
            json!({"id": "1", "customerProfile": {"ids": {"profileType": "External", "id": "contoso.com"}}}),
        );
        assert_eq!(
            r.customer_ids,
            vec![ProfileId {
                profile_type: "External".into(),
                id: "contoso.com".into()
            }]
        );
    }

    #[test]
    fn when_customer_profile_is_null_should_still_parse() {
        let r = parse(json!({"id": "1", "customerProfile": null, "details": null}));
        assert!(r.customer_contacts.is_empty() && r.customer_ids.is_empty());
    }

    #[test]
    fn when_hostile_strings_should_keep_them_verbatim() {
        let hostile = "<img src=x onerror=alert(1)>\u{0}\u{7}\u{1b}[31m\r\n'; DROP TABLE--";
        let r = parse(
            json!({"id": "1", "name": hostile, "details": {"notes": hostile},
            "customerProfile": {"name": hostile, "team": [{"firstName": hostile, "email": hostile}]}}),
        );
        assert_eq!(r.name.as_deref(), Some(hostile));
        assert_eq!(r.notes.as_deref(), Some(hostile));
        assert_eq!(r.customer_name.as_deref(), Some(hostile));
        assert_eq!(r.customer_contacts[0].first_name.as_deref(), Some(hostile));
        let raw: Value = serde_json::from_str(&r.raw).unwrap();
        assert_eq!(raw["name"], json!(hostile));
    }

    #[test]
    fn when_unknown_fields_should_keep_raw() {
        let text = r#"{"id": "1", "salesStage": "100", "brandNew": {"a": [1, 2]}}"#;
        assert_eq!(parse_referral(text).unwrap().raw, text);
    }

    #[test]
    fn when_text_short_enough_should_not_cap() {
        assert_eq!(cap_text("héllo", 6), "héllo");
    }

    #[test]
    fn when_text_cut_should_never_split_utf8_and_never_exceed_max() {
        let text = "é€😀".repeat(50);
        for max in 0..text.len() {
            let capped = cap_text(&text, max);
            assert!(capped.len() <= max, "max {max}");
            if max >= TRUNCATION_MARKER.len() {
                assert!(capped.ends_with(TRUNCATION_MARKER));
            }
        }
        let capped = cap_text(&format!("ab😀{}", "x".repeat(20)), 17);
        assert_eq!(capped, format!("ab{TRUNCATION_MARKER}"));
    }

    #[test]
    fn when_invalid_payload_id_should_be_deterministic_sha256_prefix() {
        assert_eq!(invalid_payload_id("abc"), "invalid-ba7816bf8f01cfea");
        assert_eq!(invalid_payload_id("abc"), invalid_payload_id("abc"));
        assert_ne!(invalid_payload_id("abc"), invalid_payload_id("abd"));
    }

    #[test]
    fn when_a_content_digest_is_taken_should_be_a_sha256_prefix() {
        assert_eq!(content_digest("abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert!(invalid_payload_id("abc").ends_with(&content_digest("abc")[..16]));
    }

    #[test]
    fn when_only_the_update_time_is_wanted_should_read_it_alone() {
        let raw = json!({"id": "1", "updatedDateTime": "2026-10-29T08:01:12.5Z", "details": 3});
        assert_eq!(
            updated_date_time(&raw.to_string()),
            parse(raw.clone()).updated
        );
        let numbered = r#"{"id": 7, "updatedDateTime": "2026-10-29T08:01:12Z"}"#;
        assert_eq!(
            updated_date_time(numbered),
            parse_referral(numbered).unwrap().updated
        );
        assert!(updated_date_time(numbered).is_some());
        assert_eq!(
            updated_date_time(r#"{"id": "1", "updatedDateTime": "soon"}"#),
            None
        );
        assert_eq!(updated_date_time("[1]"), None);
        assert_eq!(updated_date_time("{\"id\": \"1\""), None, "not JSON");
        assert_eq!(
            updated_date_time(r#"{"id": " ", "updatedDateTime": "2026-10-29T08:01:12Z"}"#),
            None,
            "a blank id is no id"
        );
        assert_eq!(
            updated_date_time(r#"{"updatedDateTime": "2026-10-29T08:01:12Z"}"#),
            None,
            "input without an id is not a referral"
        );
        let huge = json!({"id": "1", "updatedDateTime": "2026-10-29T08:01:12Z",
            "notes": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert_eq!(updated_date_time(&huge.to_string()), None);
    }

    #[test]
    fn when_version_requested_should_use_updated_and_etag() {
        let r =
            parse(json!({"id": "1", "updatedDateTime": "2026-10-29T08:01:12Z", "eTag": "\"e1\""}));
        let v = r.version();
        assert_eq!(v.etag.as_deref(), Some("\"e1\""));
        assert_eq!(v.updated, r.updated);
    }
}
