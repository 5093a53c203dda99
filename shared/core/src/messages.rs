//! The bodies of the queue messages between the functions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use hunter_domain::model::Arrival;
use hunter_domain::referral::InvalidPayload;

/// SQS's largest message body, in bytes. A referral whose message would be larger travels by
/// reference ([`PayloadRefMessage`]).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A referral on the referrals queue, with the sync run that fetched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralMessage {
    /// The sync run to count it in (absent when enqueued by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How it reached Hunter (absent: a sweep).
    #[serde(default, skip_serializing_if = "Arrival::is_sweep")]
    pub arrived_by: Arrival,
    /// The referral exactly as Partner Center sent it.
    pub referral: Value,
}

impl ReferralMessage {
    pub fn to_body(&self) -> String {
        // A `Value` and an optional string always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The body of run `run_id`'s message for a referral kept as the text it came as: the same
    /// envelope as [`Self::to_body`], with the referral's text verbatim.
    pub fn body_of(run_id: &str, referral: &RawValue) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            run_id: &'a str,
            referral: &'a RawValue,
        }
        // Text and a valid JSON text always serialize.
        serde_json::to_string(&Envelope { run_id, referral }).unwrap_or_default()
    }

    /// The body of a message for a referral a webhook event named: no run, `arrivedBy` webhook,
    /// the referral's text verbatim.
    pub fn webhook_body(referral: &RawValue) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            arrived_by: Arrival,
            referral: &'a RawValue,
        }
        serde_json::to_string(&Envelope {
            arrived_by: Arrival::Webhook,
            referral,
        })
        .unwrap_or_default()
    }

    /// Reads a message body: the envelope, or a bare referral object (e.g. redriven by hand).
    /// A message by reference reads with a null referral: [`QueuedReferral::from_body`] follows
    /// the reference.
    pub fn from_body(body: &str) -> Result<Self, InvalidPayload> {
        Ok(match QueuedReferral::from_body(body)? {
            QueuedReferral::Inline(message) => message,
            QueuedReferral::Stored(stored) => Self {
                run_id: stored.run_id,
                arrived_by: stored.arrived_by,
                referral: Value::Null,
            },
        })
    }
}

/// A referral too large for a message, on the referrals queue by reference: fetch-referrals
/// stored it whole under `payload_ref` ([`crate::ports::PayloadStore`]) before sending this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadRefMessage {
    /// The sync run to count it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How it reached Hunter (absent: a sweep).
    #[serde(default, skip_serializing_if = "Arrival::is_sweep")]
    pub arrived_by: Arrival,
    /// The payload's key: the referral's id, or the digest of its text when it has no string id.
    pub payload_ref: String,
}

impl PayloadRefMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a referrals-queue message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum QueuedReferral {
    /// The referral itself (`{"runId", "referral"}`, or a bare referral object).
    Inline(ReferralMessage),
    /// The key of a referral kept in the store (`{"runId", "payloadRef"}`).
    Stored(PayloadRefMessage),
}

impl QueuedReferral {
    /// Reads a message body of any shape sent so far: the envelope, a reference, or a bare
    /// referral object (e.g. redriven by hand).
    pub fn from_body(body: &str) -> Result<Self, InvalidPayload> {
        Ok(match Self::read(body)? {
            QueuedReferralText::Inline {
                run_id,
                arrived_by,
                referral,
            } => Self::Inline(ReferralMessage {
                run_id,
                arrived_by,
                // The text is valid JSON already: `read` took it from a parsed body.
                referral: serde_json::from_str(referral)
                    .map_err(|e| InvalidPayload::NotJson(e.to_string()))?,
            }),
            QueuedReferralText::Stored(stored) => Self::Stored(stored),
        })
    }

    /// Reads a message body like [`Self::from_body`], without building a `Value`: an inline
    /// referral is its JSON text, borrowed from the body.
    pub fn read(body: &str) -> Result<QueuedReferralText<'_>, InvalidPayload> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(InvalidPayload::TooLarge { bytes: body.len() });
        }
        let Envelope(fields) =
            serde_json::from_str(body).map_err(|e| InvalidPayload::NotJson(e.to_string()))?;
        let fields = fields.ok_or(InvalidPayload::NotAnObject)?;
        let run_id = fields.run_id.and_then(non_empty);
        let arrived_by = fields
            .arrived_by
            .and_then(|a| serde_json::from_value(a).ok())
            .unwrap_or_default();
        let bare = QueuedReferralText::Inline {
            run_id: None,
            arrived_by: Arrival::Sweep,
            referral: body,
        };
        Ok(if fields.has_id {
            bare
        } else if let Some(referral) = fields.referral {
            QueuedReferralText::Inline {
                run_id,
                arrived_by,
                referral: referral.get(),
            }
        } else if let Some(payload_ref) = fields.payload_ref.and_then(non_empty) {
            QueuedReferralText::Stored(PayloadRefMessage {
                run_id,
                arrived_by,
                payload_ref,
            })
        } else {
            bare
        })
    }

    /// The sync run to count it in.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Self::Inline(message) => message.run_id.as_deref(),
            Self::Stored(stored) => stored.run_id.as_deref(),
        }
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
    /// How often the push was put off because Dynamics asked to wait (each time as a fresh
    /// message, so waiting never uses up the queue's receives).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl PushMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
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
            arrived_by: Arrival::Sweep,
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
    fn when_a_referral_travels_by_reference_should_read_the_key_and_run() {
        let by_reference = PayloadRefMessage {
            run_id: Some("run-1".into()),
            arrived_by: Arrival::Sweep,
            payload_ref: "r1".into(),
        };
        let body = by_reference.to_body();
        assert_eq!(body, r#"{"runId":"run-1","payloadRef":"r1"}"#);
        assert_eq!(
            QueuedReferral::from_body(&body).unwrap(),
            QueuedReferral::Stored(by_reference)
        );
        assert_eq!(
            ReferralMessage::from_body(&body).unwrap(),
            ReferralMessage {
                run_id: Some("run-1".into()),
                arrived_by: Arrival::Sweep,
                referral: Value::Null
            }
        );
    }

    #[test]
    fn when_a_body_has_an_older_shape_should_still_read_it_inline() {
        let envelope = ReferralMessage {
            run_id: Some("run-1".into()),
            arrived_by: Arrival::Sweep,
            referral: json!({"id": "r1"}),
        };
        let read = QueuedReferral::from_body(&envelope.to_body()).unwrap();
        assert_eq!(read.run_id(), Some("run-1"));
        assert_eq!(read, QueuedReferral::Inline(envelope));
        let bare = QueuedReferral::from_body(r#"{"id":"r2","payloadRef":"a field"}"#).unwrap();
        assert!(matches!(bare, QueuedReferral::Inline(m) if m.referral["id"] == "r2"));
        let no_key = QueuedReferral::from_body(r#"{"runId":"run-1","payloadRef":7}"#).unwrap();
        assert!(
            matches!(no_key, QueuedReferral::Inline(m) if m.run_id.is_none()),
            "not a reference: read as a (bare, id-less) referral"
        );
    }

    #[test]
    fn when_a_webhook_queued_the_referral_should_read_that_it_came_by_webhook() {
        let text = RawValue::from_string(r#"{"id":"r1","n":[1, 2]}"#.to_owned()).unwrap();
        let body = ReferralMessage::webhook_body(&text);
        assert_eq!(
            body,
            r#"{"arrivedBy":"webhook","referral":{"id":"r1","n":[1, 2]}}"#
        );
        let read = QueuedReferral::read(&body).unwrap();
        assert_eq!(read.arrived_by(), Arrival::Webhook);
        assert_eq!(read.run_id(), None);
        assert!(
            matches!(read, QueuedReferralText::Inline { referral, .. } if referral == text.get())
        );
        let by_reference = PayloadRefMessage {
            run_id: None,
            arrived_by: Arrival::Webhook,
            payload_ref: "r1".into(),
        };
        let read = QueuedReferral::from_body(&by_reference.to_body()).unwrap();
        assert_eq!(read, QueuedReferral::Stored(by_reference));
        for unknown in [r#""carrier pigeon""#, "7", "null"] {
            let body = format!(r#"{{"arrivedBy":{unknown},"referral":{{"id":"r1"}}}}"#);
            let read = QueuedReferral::read(&body).unwrap();
            assert_eq!(read.arrived_by(), Arrival::Sweep, "{unknown}");
        }
        let sweep = ReferralMessage::body_of("run-1", &text);
        assert_eq!(
            QueuedReferral::read(&sweep).unwrap().arrived_by(),
            Arrival::Sweep
        );
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

/// A referrals-queue message as [`QueuedReferral::read`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueuedReferralText<'a> {
    /// The referral's JSON text (the envelope's `referral`, or the whole body).
    Inline {
        run_id: Option<String>,
        arrived_by: Arrival,
        referral: &'a str,
    },
    /// The key of a referral kept in the store.
    Stored(PayloadRefMessage),
}

impl QueuedReferralText<'_> {
    /// The sync run to count it in.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Self::Inline { run_id, .. } => run_id.as_deref(),
            Self::Stored(stored) => stored.run_id.as_deref(),
        }
    }

    /// How it reached Hunter.
    pub fn arrived_by(&self) -> Arrival {
        match self {
            Self::Inline { arrived_by, .. } => *arrived_by,
            Self::Stored(stored) => stored.arrived_by,
        }
    }
}

/// A string value that is not empty (anything else reads as absent).
fn non_empty(value: Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The envelope's keys (the last of a repeated key counts), or `None` for a body that is not
/// an object.
struct Envelope<'a>(Option<EnvelopeFields<'a>>);

#[derive(Default)]
struct EnvelopeFields<'a> {
    has_id: bool,
    run_id: Option<Value>,
    arrived_by: Option<Value>,
    referral: Option<&'a RawValue>,
    payload_ref: Option<Value>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut fields = EnvelopeFields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "id" => {
                            map.next_value::<IgnoredAny>()?;
                            fields.has_id = true;
                        }
                        "runId" => fields.run_id = Some(map.next_value()?),
                        "arrivedBy" => fields.arrived_by = Some(map.next_value()?),
                        "referral" => fields.referral = Some(map.next_value()?),
                        "payloadRef" => fields.payload_ref = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Envelope(Some(fields)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Envelope<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Envelope(None))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Envelope<'de>, E> {
                Ok(Envelope(None))
            }
        }
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}
