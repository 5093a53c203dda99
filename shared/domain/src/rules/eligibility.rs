//! Eligibility (design rule 4.3): which stored referrals become leads, and why not.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::config::Rules;
use super::domain::Domain;
use crate::referral::Referral;

/// Why a referral is stored but not worked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `direction` is not Incoming (or missing).
    NotIncoming,
    /// `status` is not New or Active (or missing).
    StatusClosed,
    /// `substatus` is Declined, Lost, Expired or Error.
    SubstatusExcluded,
    /// No company domain could be extracted.
    NoDomain,
    /// The input could not be read as a referral.
    InvalidPayload,
}

impl SkipReason {
    /// Every skip reason, in evaluation order.
    pub const ALL: [SkipReason; 5] = [
        SkipReason::NotIncoming,
        SkipReason::StatusClosed,
        SkipReason::SubstatusExcluded,
        SkipReason::NoDomain,
        SkipReason::InvalidPayload,
    ];

    /// The snake_case name (`not_incoming`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::NotIncoming => "not_incoming",
            SkipReason::StatusClosed => "status_closed",
            SkipReason::SubstatusExcluded => "substatus_excluded",
            SkipReason::NoDomain => "no_domain",
            SkipReason::InvalidPayload => "invalid_payload",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a known skip reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown skip reason {0:?}")]
pub struct UnknownSkipReason(pub String);

impl FromStr for SkipReason {
    type Err = UnknownSkipReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SkipReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownSkipReason(s.to_owned()))
    }
}

/// Outcome of the eligibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eligibility {
    /// Becomes (part of) a lead.
    Eligible,
    /// Stored with this reason, not worked.
    Skipped(SkipReason),
}

impl Eligibility {
    /// True for [`Eligibility::Eligible`].
    pub fn is_eligible(&self) -> bool {
        matches!(self, Eligibility::Eligible)
    }

    /// The skip reason, if skipped.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Eligibility::Eligible => None,
            Eligibility::Skipped(reason) => Some(*reason),
        }
    }
}

/// Checks, in order: direction Incoming, status open, substatus not excluded, domain present.
pub fn eligibility(referral: &Referral, domain: Option<&Domain>, rules: &Rules) -> Eligibility {
    if !referral
        .direction
        .as_deref()
        .is_some_and(|d| rules.is_incoming(d))
    {
        return Eligibility::Skipped(SkipReason::NotIncoming);
    }
    if !referral
        .status
        .as_deref()
        .is_some_and(|s| rules.is_eligible_status(s))
    {
        return Eligibility::Skipped(SkipReason::StatusClosed);
    }
    if referral
        .substatus
        .as_deref()
        .is_some_and(|s| rules.is_excluded_substatus(s))
    {
        return Eligibility::Skipped(SkipReason::SubstatusExcluded);
    }
    if domain.is_none() {
        return Eligibility::Skipped(SkipReason::NoDomain);
    }
    Eligibility::Eligible
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::referral::parse_referral_value;
    use crate::rules::domain::normalize_domain;
    use serde_json::json;

    fn referral(
        direction: Option<&str>,
        status: Option<&str>,
        substatus: Option<&str>,
    ) -> Referral {
        parse_referral_value(json!({
            "id": "r1", "direction": direction, "status": status, "substatus": substatus
        }))
        .unwrap()
    }

    fn check(
        direction: Option<&str>,
        status: Option<&str>,
        substatus: Option<&str>,
        with_domain: bool,
    ) -> Eligibility {
        let domain = normalize_domain("contoso.com").unwrap();
        let domain = with_domain.then_some(&domain);
        eligibility(
            &referral(direction, status, substatus),
            domain,
            &Rules::default(),
        )
    }

    #[test]
    fn when_incoming_open_with_domain_should_be_eligible() {
        assert_eq!(
            check(Some("Incoming"), Some("New"), Some("Pending"), true),
            Eligibility::Eligible
        );
        assert_eq!(
            check(Some("incoming"), Some("ACTIVE"), Some("Accepted"), true),
            Eligibility::Eligible
        );
        assert_eq!(
            check(Some("Incoming"), Some("Active"), None, true),
            Eligibility::Eligible
        );
    }

    #[test]
    fn when_outgoing_or_missing_direction_should_skip_not_incoming() {
        for direction in [Some("Outgoing"), None, Some("Sideways")] {
            assert_eq!(
                check(direction, Some("New"), Some("Pending"), true),
                Eligibility::Skipped(SkipReason::NotIncoming)
            );
        }
    }

    #[test]
    fn when_status_closed_none_or_missing_should_skip_status_closed() {
        for status in [Some("Closed"), Some("None"), None, Some("Weird")] {
            assert_eq!(
                check(Some("Incoming"), status, Some("Won"), true),
                Eligibility::Skipped(SkipReason::StatusClosed)
            );
        }
    }

    #[test]
    fn when_substatus_excluded_should_skip_substatus_excluded() {
        for sub in ["Declined", "Lost", "Expired", "Error", "lost"] {
            assert_eq!(
                check(Some("Incoming"), Some("Active"), Some(sub), true),
                Eligibility::Skipped(SkipReason::SubstatusExcluded)
            );
        }
    }

    #[test]
    fn when_no_domain_should_skip_no_domain() {
        assert_eq!(
            check(Some("Incoming"), Some("New"), Some("Pending"), false),
            Eligibility::Skipped(SkipReason::NoDomain)
        );
    }

    #[test]
    fn when_several_reasons_apply_should_report_first_in_order() {
        assert_eq!(
            check(Some("Outgoing"), Some("Closed"), Some("Lost"), false).skip_reason(),
            Some(SkipReason::NotIncoming)
        );
        assert_eq!(
            check(Some("Incoming"), Some("Closed"), Some("Lost"), false).skip_reason(),
            Some(SkipReason::StatusClosed)
        );
        assert_eq!(
            check(Some("Incoming"), Some("New"), Some("Lost"), false).skip_reason(),
            Some(SkipReason::SubstatusExcluded)
        );
    }

    #[test]
    fn when_skip_reason_formatted_should_round_trip_as_snake_case() {
        let names: Vec<String> = SkipReason::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "not_incoming",
                "status_closed",
                "substatus_excluded",
                "no_domain",
                "invalid_payload"
            ]
        );
        for reason in SkipReason::ALL {
            assert_eq!(reason.as_str().parse::<SkipReason>().unwrap(), reason);
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{reason}\"")
            );
        }
        assert!("NoDomain".parse::<SkipReason>().is_err());
    }
}
