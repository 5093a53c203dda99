//! Exact counts of leads: the UI's KPI cards and the `--once` summary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Lead, SyncStatus};
use crate::scan::ScanState;
use crate::scoring::{PriorityCategory, Segment};

/// What of a lead is counted; stores read just these fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeadTally {
    pub score: Option<u8>,
    pub provider: Option<String>,
    pub segment: Option<Segment>,
    pub priority_category: Option<PriorityCategory>,
    pub sync_status: SyncStatus,
    pub scan_state: ScanState,
}

impl LeadTally {
    /// The stored field names of a tally (for a store's projection).
    pub const FIELDS: [&'static str; 6] = [
        "score",
        "provider",
        "segment",
        "priorityCategory",
        "syncStatus",
        "scanState",
    ];
}

impl From<&Lead> for LeadTally {
    fn from(lead: &Lead) -> Self {
        Self {
            score: lead.score,
            provider: lead.provider.clone(),
            segment: lead.segment,
            priority_category: lead.priority_category,
            sync_status: lead.sync_status,
            scan_state: lead.scan_state,
        }
    }
}

/// Leads counted by each thing a seller filters them by. Keys are the serialized names; a value
/// no lead has is absent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadStats {
    pub leads: u64,
    /// Leads with a score.
    pub scored: u64,
    /// By score in bands of ten (`"00-09"`, ..., `"90-100"`; see [`score_band`]).
    pub score_bands: BTreeMap<String, u64>,
    /// By the state of their domain's last scan (`ok`, `no_mx`, `timeout`, ...).
    pub scan_states: BTreeMap<String, u64>,
    /// By segment (`Existing`, `Migration`, `Cold`, `Skip`).
    pub segments: BTreeMap<String, u64>,
    /// By priority category (`P1`..`P6`).
    pub priority_categories: BTreeMap<String, u64>,
    /// By Dynamics sync status (`pending`, `synced`, `failed`, `skipped`).
    pub sync_statuses: BTreeMap<String, u64>,
    /// By mail provider (`M365`, `Google`, ...).
    pub providers: BTreeMap<String, u64>,
}

impl LeadStats {
    /// Counts `leads`.
    pub fn of<'a>(leads: impl IntoIterator<Item = &'a Lead>) -> Self {
        let mut stats = Self::default();
        for lead in leads {
            stats.add(&LeadTally::from(lead));
        }
        stats
    }

    /// Counts one more lead.
    pub fn add(&mut self, lead: &LeadTally) {
        self.leads += 1;
        count(&mut self.scan_states, lead.scan_state.as_str());
        count(&mut self.sync_statuses, lead.sync_status.as_str());
        if let Some(score) = lead.score {
            self.scored += 1;
            count(&mut self.score_bands, &score_band(score));
        }
        if let Some(segment) = lead.segment {
            count(&mut self.segments, segment.as_str());
        }
        if let Some(category) = lead.priority_category {
            count(&mut self.priority_categories, category.as_str());
        }
        if let Some(provider) = &lead.provider {
            count(&mut self.providers, provider);
        }
    }
}

/// The band of ten a score falls in: `"00-09"`, ..., `"80-89"`, and `"90-100"`.
pub fn score_band(score: u8) -> String {
    match score / 10 {
        9.. => "90-100".to_owned(),
        tens => format!("{:02}-{:02}", tens * 10, tens * 10 + 9),
    }
}

fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    *counts.entry(key.to_owned()).or_default() += 1;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::normalize_domain;

    fn lead(name: &str, score: Option<u8>, state: ScanState, status: SyncStatus) -> Lead {
        let mut lead = Lead::new(normalize_domain(name).unwrap(), crate::clock::now());
        lead.score = score;
        lead.scan_state = state;
        lead.sync_status = status;
        lead.provider = score.map(|_| "M365".to_owned());
        lead.segment = score.map(|s| {
            if s >= 60 {
                Segment::Existing
            } else {
                Segment::Cold
            }
        });
        lead.priority_category = score.map(|_| PriorityCategory::P2);
        lead
    }

    #[test]
    fn when_counting_should_band_scores_by_ten_with_100_in_the_top_band() {
        assert_eq!(score_band(0), "00-09");
        assert_eq!(score_band(9), "00-09");
        assert_eq!(score_band(10), "10-19");
        assert_eq!(score_band(89), "80-89");
        assert_eq!(score_band(90), "90-100");
        assert_eq!(score_band(100), "90-100");
    }

    #[test]
    fn when_counting_leads_should_count_each_by_every_dimension_and_leave_unknowns_out() {
        let leads = [
            lead("a.com", Some(0), ScanState::NoMx, SyncStatus::Synced),
            lead("b.com", Some(9), ScanState::Ok, SyncStatus::Pending),
            lead("c.com", Some(90), ScanState::Ok, SyncStatus::Failed),
            lead("d.com", Some(100), ScanState::Ok, SyncStatus::Synced),
            lead("e.com", None, ScanState::Timeout, SyncStatus::Pending),
        ];
        let stats = LeadStats::of(&leads);
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        assert_eq!(stats.leads, 5);
        assert_eq!(stats.scored, 4);
        assert_eq!(stats.score_bands, map(&[("00-09", 2), ("90-100", 2)]));
        assert_eq!(
            stats.scan_states,
            map(&[("no_mx", 1), ("ok", 3), ("timeout", 1)])
        );
        assert_eq!(
            stats.sync_statuses,
            map(&[("failed", 1), ("pending", 2), ("synced", 2)])
        );
        assert_eq!(stats.segments, map(&[("Cold", 2), ("Existing", 2)]));
        assert_eq!(stats.priority_categories, map(&[("P2", 4)]));
        assert_eq!(stats.providers, map(&[("M365", 4)]));
    }

    #[test]
    fn when_a_stored_tally_lacks_fields_should_read_them_as_unknown() {
        let tally: LeadTally = serde_json::from_str(r#"{"syncStatus": "synced"}"#).unwrap();
        assert_eq!(tally.sync_status, SyncStatus::Synced);
        assert_eq!(tally.scan_state, ScanState::default());
        assert_eq!(tally.segment, None);
    }
}
