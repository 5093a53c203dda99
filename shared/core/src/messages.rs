//! The bodies of the queue messages between the functions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use hunter_domain::referral::{InvalidPayload, MAX_PAYLOAD_BYTES};

/// SQS's largest message body, in bytes.
pub const MAX_MESSAGE_BYTES: usize = MAX_PAYLOAD_BYTES;

/// A referral on the referrals queue, with the sync run that fetched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralMessage {
    /// The sync run to count it in (absent when enqueued by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The referral exactly as Partner Center sent it.
    pub referral: Value,
}

impl ReferralMessage {
    pub fn to_body(&self) -> String {
        // A `Value` and an optional string always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a message body: the envelope, or a bare referral object (e.g. redriven by hand).
    pub fn from_body(body: &str) -> Result<Self, InvalidPayload> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(InvalidPayload::TooLarge { bytes: body.len() });
        }
        let value: Value =
            serde_json::from_str(body).map_err(|e| InvalidPayload::NotJson(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(InvalidPayload::NotAnObject);
        };
        if object.contains_key("referral") && !object.contains_key("id") {
            let run_id = match object.remove("runId") {
                Some(Value::String(id)) if !id.is_empty() => Some(id),
                _ => None,
            };
            let referral = object.remove("referral").unwrap_or(Value::Null);
            return Ok(Self { run_id, referral });
        }
        Ok(Self {
            run_id: None,
            referral: Value::Object(object),
        })
    }
}

/// A lead to push to Dynamics 365 on the dynamics-push queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    pub domain: String,
    /// The lead's `content_version` that asked for the push (a newer one supersedes it).
    pub lead_version: u64,
    /// Push even if Dynamics has this version already (a person asked for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl PushMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn when_an_envelope_round_trips_should_keep_run_and_referral() {
        let message = ReferralMessage {
            run_id: Some("run-1".into()),
            referral: json!({"id": "r1", "extra": [1]}),
        };
        assert_eq!(
            ReferralMessage::from_body(&message.to_body()).unwrap(),
            message
        );
    }

    #[test]
    fn when_the_body_is_a_bare_referral_should_read_it_without_a_run() {
        let message =
            ReferralMessage::from_body(r#"{"id":"r1","referral":"a field named referral"}"#)
                .unwrap();
        assert_eq!(message.run_id, None);
        assert_eq!(message.referral["id"], "r1");
    }

    #[test]
    fn when_the_body_is_not_an_object_should_say_why() {
        assert!(matches!(
            ReferralMessage::from_body("[1]"),
            Err(InvalidPayload::NotAnObject)
        ));
        assert!(matches!(
            ReferralMessage::from_body("{oops"),
            Err(InvalidPayload::NotJson(_))
        ));
    }
}
