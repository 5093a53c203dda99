//! What sellers did with a lead in Dynamics 365, as Hunter pulled it back, and the conflict rule
//! between the two sides: sellers own a lead's status, owner and their notes; Hunter owns its
//! score, provider, segment and referral aggregates. A push never writes a seller's column
//! ([`SELLER_OWNED_COLUMNS`]; a mapping that names one is refused), and a pull never changes
//! what Hunter owns (it only writes [`CrmState`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Dataverse columns that sellers own: a mapping may not push them (compared case-insensitively,
/// with or without `@odata.bind`). Sellers' own notes are annotation records, which Hunter never
/// writes; `description` carries the referral's notes and is Hunter's.
pub const SELLER_OWNED_COLUMNS: [&str; 7] = [
    "statecode",
    "statuscode",
    "ownerid",
    "owninguser",
    "owningteam",
    "owningbusinessunit",
    "qualifyingopportunityid",
];

/// Whether `column` (a mapped Dataverse column, perhaps `name@odata.bind`) belongs to sellers.
pub fn is_seller_owned(column: &str) -> bool {
    let name = column.split('@').next().unwrap_or(column).trim();
    SELLER_OWNED_COLUMNS
        .iter()
        .any(|owned| owned.eq_ignore_ascii_case(name))
}

/// A lead's state in the CRM as last pulled: shown beside Hunter's own fields, never pushed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmState {
    /// `Open`, `Qualified`, `Disqualified` (Dataverse's lead `statecode`).
    pub status: Option<String>,
    /// The status reason (`statuscode`): `New`, `Contacted`, `Qualified`, `Lost`, ...
    pub status_reason: Option<String>,
    /// The owner's name as Dataverse shows it, else the owner's id.
    pub owner: Option<String>,
    pub owner_id: Option<String>,
    /// The opportunity the lead was qualified into.
    pub opportunity_id: Option<String>,
    /// `Open`, `Won`, `Lost` (the opportunity's `statecode`).
    pub opportunity_status: Option<String>,
    /// When a seller last changed the record (Dataverse's `modifiedon`).
    pub updated_at: Option<DateTime<Utc>>,
    /// Referrals Hunter closed in Partner Center for this outcome: referral id → the substatus
    /// it set (`Won`, `Lost`). Their change coming back is Hunter's own and asks for no push.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrored: BTreeMap<String, String>,
    /// An outcome still to close the lead's referrals with in Partner Center (mirroring on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_due: Option<Outcome>,
    /// Attempts at [`CrmState::mirror_due`] so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mirror_attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One change pulled from the CRM for the lead keyed `key` (Hunter's key: the domain). Only the
/// parts the CRM reported are `Some`; the rest stays as pulled before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrmChange {
    pub key: String,
    /// The CRM's id of the lead record.
    pub record_id: Option<String>,
    pub status: Option<(String, Option<String>)>,
    /// Owner id and name.
    pub owner: Option<(String, Option<String>)>,
    /// The opportunity the lead was qualified into (its `qualifyingopportunityid`).
    pub qualifying_opportunity: Option<String>,
    /// Opportunities converted from the lead, by id, with their status: only the qualifying
    /// one's counts (a seller may make others from the same lead).
    pub opportunity_statuses: Vec<(String, String)>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A CRM outcome worth telling Partner Center about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The opportunity was won.
    Won,
    /// The opportunity was lost, or the lead disqualified.
    Lost,
}

impl Outcome {
    /// Partner Center's referral `substatus` for this outcome (its `status` is `Closed`).
    pub fn substatus(self) -> &'static str {
        match self {
            Self::Won => "Won",
            Self::Lost => "Lost",
        }
    }
}

impl CrmState {
    /// Applies `change`; answers whether anything a seller decides changed. A change of the
    /// record's time alone (Hunter's own push touches it) changes nothing.
    pub fn apply(&mut self, change: &CrmChange) -> bool {
        let before = self.clone();
        if let Some((status, reason)) = &change.status {
            self.status = Some(status.clone());
            self.status_reason.clone_from(reason);
        }
        if let Some((id, name)) = &change.owner {
            self.owner_id = Some(id.clone());
            self.owner = Some(name.clone().unwrap_or_else(|| id.clone()));
        }
        if let Some(id) = &change.qualifying_opportunity {
            if self.opportunity_id.as_deref() != Some(id) {
                self.opportunity_status = None;
            }
            self.opportunity_id = Some(id.clone());
        }
        if let Some((_, status)) = change
            .opportunity_statuses
            .iter()
            .find(|(id, _)| self.opportunity_id.as_deref() == Some(id))
        {
            self.opportunity_status = Some(status.clone());
        }
        let changed = *self != before;
        if changed && change.updated_at.is_some() {
            self.updated_at = self.updated_at.max(change.updated_at);
        }
        changed
    }

    /// The outcome this state stands for, if it is one: a won or lost opportunity, or a
    /// disqualified lead.
    pub fn outcome(&self) -> Option<Outcome> {
        match (self.opportunity_status.as_deref(), self.status.as_deref()) {
            (Some("Won"), _) => Some(Outcome::Won),
            (Some("Lost"), _) | (_, Some("Disqualified")) => Some(Outcome::Lost),
            _ => None,
        }
    }
}

/// The lead `statecode` as Dataverse names it.
pub fn lead_status(statecode: i64) -> String {
    match statecode {
        0 => "Open".to_owned(),
        1 => "Qualified".to_owned(),
        2 => "Disqualified".to_owned(),
        other => format!("Unknown ({other})"),
    }
}

/// The lead `statuscode` (status reason) as Dataverse names it.
pub fn lead_status_reason(statuscode: i64) -> String {
    match statuscode {
        1 => "New".to_owned(),
        2 => "Contacted".to_owned(),
        3 => "Qualified".to_owned(),
        4 => "Lost".to_owned(),
        5 => "Cannot Contact".to_owned(),
        6 => "No Longer Interested".to_owned(),
        7 => "Canceled".to_owned(),
        other => format!("Unknown ({other})"),
    }
}

/// The opportunity `statecode` as Dataverse names it.
pub fn opportunity_status(statecode: i64) -> String {
    match statecode {
        0 => "Open".to_owned(),
        1 => "Won".to_owned(),
        2 => "Lost".to_owned(),
        other => format!("Unknown ({other})"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_columns_are_named_seller_ownership_should_ignore_case_and_binds() {
        assert!(is_seller_owned("statuscode"));
        assert!(is_seller_owned("OwnerId@odata.bind"));
        assert!(is_seller_owned(" StateCode "));
        assert!(!is_seller_owned("description"));
        assert!(!is_seller_owned("hnt_finalscore"));
    }

    #[test]
    fn when_changes_arrive_in_parts_the_state_should_keep_what_was_not_reported() {
        let mut state = CrmState::default();
        let owner = CrmChange {
            key: "contoso.com".into(),
            owner: Some(("u1".into(), Some("Avery Seller".into()))),
            ..CrmChange::default()
        };
        assert!(state.apply(&owner));
        assert!(
            !state.apply(&owner),
            "the same change twice changes nothing"
        );
        let qualified = CrmChange {
            key: "contoso.com".into(),
            status: Some(("Qualified".into(), Some("Qualified".into()))),
            qualifying_opportunity: Some("o1".into()),
            ..CrmChange::default()
        };
        assert!(state.apply(&qualified));
        assert_eq!(state.owner.as_deref(), Some("Avery Seller"));
        assert_eq!(state.status.as_deref(), Some("Qualified"));
        assert_eq!(state.outcome(), None);
        // Another opportunity made from the same lead is not the one it was qualified into.
        let other = CrmChange {
            key: "contoso.com".into(),
            opportunity_statuses: vec![("o2".into(), "Won".into())],
            ..CrmChange::default()
        };
        assert!(!state.apply(&other));
        assert_eq!(state.outcome(), None);
        let won = CrmChange {
            key: "contoso.com".into(),
            opportunity_statuses: vec![("o2".into(), "Lost".into()), ("o1".into(), "Won".into())],
            ..CrmChange::default()
        };
        assert!(state.apply(&won));
        assert_eq!(state.outcome(), Some(Outcome::Won));
        let nameless = CrmChange {
            key: "contoso.com".into(),
            owner: Some(("u2".into(), None)),
            ..CrmChange::default()
        };
        state.apply(&nameless);
        assert_eq!(state.owner.as_deref(), Some("u2"));
    }

    #[test]
    fn when_only_the_records_time_moved_nothing_should_change() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let seen = CrmChange {
            key: "contoso.com".into(),
            status: Some(("Open".into(), Some("New".into()))),
            updated_at: Some(at("2026-12-01T10:00:00Z")),
            ..CrmChange::default()
        };
        let mut state = CrmState::default();
        assert!(state.apply(&seen));
        let pushed = CrmChange {
            updated_at: Some(at("2026-12-01T11:00:00Z")),
            ..seen.clone()
        };
        assert!(!state.apply(&pushed), "Hunter's push touched the record");
        assert_eq!(state.updated_at, Some(at("2026-12-01T10:00:00Z")));
    }

    #[test]
    fn when_a_lead_is_disqualified_its_outcome_should_be_lost() {
        let state = CrmState {
            status: Some(lead_status(2)),
            status_reason: Some(lead_status_reason(6)),
            ..CrmState::default()
        };
        assert_eq!(state.outcome(), Some(Outcome::Lost));
        assert_eq!(state.status_reason.as_deref(), Some("No Longer Interested"));
        assert_eq!(lead_status(9), "Unknown (9)");
        assert_eq!(opportunity_status(2), "Lost");
    }
}
