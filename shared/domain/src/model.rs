//! The records Hunter stores and serves: referrals, leads, sync runs, sync state, audit entries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crm::CrmState;
use crate::referral::{Referral, cap_text, invalid_payload_id};
use crate::rules::{
    Domain, DomainSource, Eligibility, ExtractedDomain, SkipReason, UpsertOutcome, Version,
};
use crate::scan::{ScanState, Signals};
use crate::scoring::{CommercialSegment, Heat, PriorityCategory, ScoreLine, Segment, TenantSize};

/// How much of an unreadable payload is kept with its `invalid_payload` record.
pub const INVALID_RAW_MAX_BYTES: usize = 16 * 1024;

/// How a referral reached Hunter.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// A scheduled or requested sync's pages.
    #[default]
    Sweep,
    /// A Partner Center webhook event naming it.
    Webhook,
}

impl Arrival {
    pub fn is_sweep(&self) -> bool {
        *self == Self::Sweep
    }
}

/// A referral as stored: the fields the API shows, the decision taken, and the raw payload.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralRecord {
    pub id: String,
    pub engagement_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub substatus: Option<String>,
    #[serde(rename = "type")]
    pub referral_type: Option<String>,
    pub qualification: Option<String>,
    pub direction: Option<String>,
    pub customer_name: Option<String>,
    pub customer_country: Option<String>,
    pub deal_value: Option<f64>,
    pub currency: Option<String>,
    pub domain: Option<Domain>,
    pub domain_source: Option<DomainSource>,
    pub eligible: bool,
    pub skip_reason: Option<SkipReason>,
    /// Why the reason applies, in words (e.g. the parse error of an `invalid_payload`).
    pub skip_detail: Option<String>,
    pub created_date_time: Option<DateTime<Utc>>,
    pub updated_date_time: Option<DateTime<Utc>>,
    pub etag: Option<String>,
    pub synced_at: DateTime<Utc>,
    /// How the version stored reached Hunter (records stored before webhooks: `sweep`).
    #[serde(default)]
    pub arrived_by: Arrival,
    /// The payload as received (JSON text; capped for unreadable input).
    pub raw: String,
}

/// The fields of a stored [`ReferralRecord`] that make its [`Version`], read from the record's
/// JSON without building the rest of it (a store deciding an upsert needs only these).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredVersion {
    updated_date_time: Option<DateTime<Utc>>,
    etag: Option<String>,
}

impl From<StoredVersion> for Version {
    fn from(stored: StoredVersion) -> Self {
        Self {
            updated: stored.updated_date_time,
            etag: stored.etag,
        }
    }
}

impl ReferralRecord {
    /// The record of a readable referral and the decisions taken on it.
    pub fn from_referral(
        referral: &Referral,
        domain: Option<ExtractedDomain>,
        eligibility: Eligibility,
        synced_at: DateTime<Utc>,
    ) -> Self {
        let (eligible, skip_reason) = match eligibility {
            Eligibility::Eligible => (true, None),
            Eligibility::Skipped(reason) => (false, Some(reason)),
        };
        let (domain, domain_source) = match domain {
            Some(d) => (Some(d.domain), Some(d.source)),
            None => (None, None),
        };
        Self {
            id: referral.id.clone(),
            engagement_id: referral.engagement_id.clone(),
            name: referral.name.clone(),
            status: referral.status.clone(),
            substatus: referral.substatus.clone(),
            referral_type: referral.referral_type.clone(),
            qualification: referral.qualification.clone(),
            direction: referral.direction.clone(),
            customer_name: referral.customer_name.clone(),
            customer_country: referral.customer_country.clone(),
            deal_value: referral.deal_value,
            currency: referral.currency.clone(),
            domain,
            domain_source,
            eligible,
            skip_reason,
            skip_detail: None,
            created_date_time: referral.created,
            updated_date_time: referral.updated,
            etag: referral.etag.clone(),
            synced_at,
            arrived_by: Arrival::Sweep,
            raw: referral.raw.clone(),
        }
    }

    /// The record of input that could not be read: kept (capped) with its reason, never dropped.
    pub fn invalid(text: &str, detail: &str, synced_at: DateTime<Utc>) -> Self {
        Self {
            id: invalid_payload_id(text),
            engagement_id: None,
            name: None,
            status: None,
            substatus: None,
            referral_type: None,
            qualification: None,
            direction: None,
            customer_name: None,
            customer_country: None,
            deal_value: None,
            currency: None,
            domain: None,
            domain_source: None,
            eligible: false,
            skip_reason: Some(SkipReason::InvalidPayload),
            skip_detail: Some(detail.to_owned()),
            created_date_time: None,
            updated_date_time: None,
            etag: None,
            synced_at,
            arrived_by: Arrival::Sweep,
            raw: cap_text(text, INVALID_RAW_MAX_BYTES),
        }
    }

    /// The version that decides whether this record replaces a stored one.
    pub fn version(&self) -> Version {
        Version {
            updated: self.updated_date_time,
            etag: self.etag.clone(),
        }
    }

    /// Lowercase text that the `q` filter searches: name, customer, domain, id.
    pub fn search_text(&self) -> String {
        [
            self.name.as_deref(),
            self.customer_name.as_deref(),
            self.domain.as_ref().map(Domain::as_str),
            Some(&self.id),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
    }
}

/// Where a lead stands with Dynamics 365.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    #[default]
    Pending,
    Synced,
    Failed,
    Skipped,
}

impl SyncStatus {
    /// Every status, in the order a lead usually goes through them.
    pub const ALL: [SyncStatus; 4] = [Self::Pending, Self::Synced, Self::Failed, Self::Skipped];

    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// The status named `text` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// How many of a lead's referral ids the lead item keeps (newest first); the referrals themselves
/// are items of their own ([`LeadReferral`]), so a busy domain's lead stays small.
pub const LEAD_RECENT_REFERRALS: usize = 20;

/// One company (registrable domain), the aggregates of the referrals that named it, and where it
/// stands with Dynamics. The referrals' contributions are stored beside it, one item each.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    pub domain: Domain,
    pub company_name: Option<String>,
    /// The mail provider (`M365`, `Google`, ..., `Local`, `Unknown`); `None` until scored.
    pub provider: Option<String>,
    pub tenant_size: Option<TenantSize>,
    /// 0..=100; `None` until a scan gave one.
    pub score: Option<u8>,
    pub segment: Option<Segment>,
    /// 1 (work first) ..= 7.
    pub priority: Option<u8>,
    #[serde(default)]
    pub priority_category: Option<PriorityCategory>,
    #[serde(default)]
    pub commercial_segment: Option<CommercialSegment>,
    #[serde(default)]
    pub commercial_heat: Option<Heat>,
    /// One line per scoring rule that applied, in rule order; they add up to `score`.
    #[serde(default)]
    pub score_breakdown: Vec<ScoreLine>,
    /// How the last scan of the domain ended (a failed rescan keeps the last score and signals).
    #[serde(default)]
    pub scan_state: ScanState,
    #[serde(default)]
    pub scanned_at: Option<DateTime<Utc>>,
    /// Why the last scan ended as it did, when it did not end `ok`.
    #[serde(default)]
    pub scan_detail: Option<String>,
    /// What the last conclusive scan found.
    #[serde(default)]
    pub signals: Option<Signals>,
    /// When a scan of the domain was last started (so concurrent ingests scan it once).
    #[serde(default)]
    pub scan_claimed_at: Option<DateTime<Utc>>,
    /// Score, provider and segment changes, newest last, at most [`LEAD_HISTORY`].
    #[serde(default)]
    pub history: Vec<ScoreChange>,
    pub referral_count: u32,
    /// The newest referral ids, at most [`LEAD_RECENT_REFERRALS`], newest first.
    pub referral_ids: Vec<String>,
    /// How many referrals of each type (`Shared`, `Independent`, ...).
    #[serde(default)]
    pub referral_types: BTreeMap<String, u32>,
    /// The contribution of the most recently updated referral.
    #[serde(default)]
    pub latest: Option<LeadReferral>,
    /// Deal values summed per currency (`""` for referrals that name none), never across them.
    #[serde(default)]
    pub deal_values: BTreeMap<String, f64>,
    pub sync_status: SyncStatus,
    pub dynamics_id: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub sync_attempts: u32,
    /// +1 whenever a referral changes what the lead says (push-state writes leave it alone);
    /// push requests name it.
    #[serde(default)]
    pub content_version: u64,
    /// The `content_version` Dynamics last received (pushes of it or older are skipped).
    #[serde(default)]
    pub synced_version: Option<u64>,
    /// What sellers did with the lead in the CRM, as last pulled; `None` until a pull saw it.
    #[serde(default)]
    pub crm: Option<CrmState>,
    /// Optimistic-concurrency counter: 1 on creation, +1 on every write.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl Lead {
    /// A lead for `domain` that no referral has been added to yet.
    pub fn new(domain: Domain, now: DateTime<Utc>) -> Self {
        Self {
            domain,
            company_name: None,
            provider: None,
            tenant_size: None,
            score: None,
            segment: None,
            priority: None,
            priority_category: None,
            commercial_segment: None,
            commercial_heat: None,
            score_breakdown: Vec::new(),
            scan_state: ScanState::Pending,
            scanned_at: None,
            scan_detail: None,
            signals: None,
            scan_claimed_at: None,
            history: Vec::new(),
            referral_count: 0,
            referral_ids: Vec::new(),
            referral_types: BTreeMap::new(),
            latest: None,
            deal_values: BTreeMap::new(),
            sync_status: SyncStatus::Pending,
            dynamics_id: None,
            last_synced_at: None,
            last_error: None,
            sync_attempts: 0,
            content_version: 0,
            synced_version: None,
            crm: None,
            version: 1,
            updated_at: now,
        }
    }

    /// The status of the most recently updated referral.
    pub fn latest_status(&self) -> Option<&str> {
        self.latest.as_ref().and_then(|l| l.status.as_deref())
    }

    /// The deal value in the currency of the most recently updated referral (the one figure a
    /// CRM column holds; other currencies are not added to it).
    pub fn deal_value(&self) -> Option<f64> {
        let currency = self
            .latest
            .as_ref()
            .and_then(|l| l.currency.clone())
            .unwrap_or_default();
        self.deal_values.get(&currency).copied()
    }

    /// Whether any of the lead's referrals is a co-sell (`type` `Shared`).
    pub fn has_co_sell(&self) -> bool {
        self.referral_types
            .iter()
            .any(|(t, n)| *n > 0 && t.eq_ignore_ascii_case("Shared"))
    }

    /// Lowercase text that the `q` filter searches: domain and company name.
    pub fn search_text(&self) -> String {
        format!(
            "{} {}",
            self.domain,
            self.company_name.as_deref().unwrap_or_default()
        )
        .to_lowercase()
    }
}

/// How many score changes a lead keeps.
pub const LEAD_HISTORY: usize = 20;

/// A lead's judgement as it changed: when, and what it became.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreChange {
    pub at: DateTime<Utc>,
    pub score: u8,
    pub provider: String,
    pub segment: Segment,
}

/// What one referral contributes to its lead.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadReferral {
    pub id: String,
    #[serde(rename = "type")]
    pub referral_type: Option<String>,
    pub status: Option<String>,
    pub deal_value: Option<f64>,
    pub currency: Option<String>,
    pub customer_name: Option<String>,
    pub updated_date_time: Option<DateTime<Utc>>,
    /// The Dynamics opportunity made of this referral once it was accepted (so its stage is set
    /// when it is created only: sellers own it afterwards).
    #[serde(default)]
    pub opportunity_id: Option<String>,
}

/// How a sync run ended (or that it has not yet).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Its invocation ended without letting go of the sync (killed by the timeout): the run that
    /// found its lease expired ended it and went on from the stored cursor.
    Abandoned,
}

impl RunStatus {
    /// The name as stored and shown (`running`, `succeeded`, `failed`, `abandoned`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}

/// One Partner Center sync: what fetch-referrals fetched and enqueued, how it ended, and what
/// ingest-referral made of it (`stored`, `eligible`, `skipped`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRun {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub pages: u32,
    pub fetched: u32,
    pub enqueued: u32,
    /// Fetched referrals fetch-referrals stored as `invalid_payload` itself (not enqueued).
    #[serde(default)]
    pub recorded_invalid: u32,
    /// Referrals of this run that ingest stored (written by ingest, one increment each).
    pub stored: u32,
    pub eligible: u32,
    /// Stored referrals by skip reason.
    pub skipped: BTreeMap<String, u32>,
    /// Stored referrals by upsert outcome (inserted, updated, unchanged, stale).
    #[serde(default)]
    pub outcomes: BTreeMap<String, u32>,
    pub error: Option<String>,
    /// When the run's summary was reported (see `SyncStore::claim_run_summary`).
    #[serde(default)]
    pub summarized_at: Option<DateTime<Utc>>,
}

impl SyncRun {
    /// A new running sync.
    pub fn start(id: impl Into<String>, started_at: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            started_at,
            finished_at: None,
            status: RunStatus::Running,
            pages: 0,
            fetched: 0,
            enqueued: 0,
            recorded_invalid: 0,
            stored: 0,
            eligible: 0,
            skipped: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            error: None,
            summarized_at: None,
        }
    }

    /// The run is over and every referral it delivered is stored: all it fetched when it
    /// succeeded; what it enqueued or recorded itself when it failed or was abandoned.
    pub fn is_complete(&self) -> bool {
        match self.status {
            RunStatus::Running => false,
            RunStatus::Succeeded => self.stored >= self.fetched,
            RunStatus::Failed | RunStatus::Abandoned => {
                self.stored >= self.enqueued + self.recorded_invalid
            }
        }
    }

    /// Adds one stored referral to the ingest counters: stored, by upsert outcome, and as
    /// eligible (`skip_reason` `None`) or skipped for its reason.
    pub fn add_ingested(&mut self, outcome: UpsertOutcome, skip_reason: Option<SkipReason>) {
        self.stored += 1;
        *self
            .outcomes
            .entry(outcome.as_str().to_owned())
            .or_default() += 1;
        match skip_reason {
            None => self.eligible += 1,
            Some(reason) => *self.skipped.entry(reason.as_str().to_owned()).or_default() += 1,
        }
    }
}

/// What Partner Center's webhooks did: the registration Hunter made, and the events it got.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookActivity {
    /// The registration made through `hunter-local webhooks register` (or at start with the
    /// built-in simulator); `None` when none was made, or it was deleted.
    pub registration: Option<WebhookRegistrationState>,
    /// Events whose signature verified.
    pub received: u64,
    /// Referrals fetched and queued for ingest because of an event.
    pub queued: u64,
    /// Events refused (unsigned, wrongly signed, untrusted certificate).
    pub refused: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_refused_at: Option<DateTime<Utc>>,
    /// Why the last refused event was refused.
    pub last_refusal: Option<String>,
}

/// A webhook registration as Hunter made it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRegistrationState {
    pub url: String,
    pub events: Vec<String>,
    pub registered_at: DateTime<Utc>,
}

/// A named piece of sync state (watermark, continuation link, ...), written with a version check.
/// No secrets live here (the Partner Center refresh token has a store of its own); `Debug` still
/// leaves the value out, as it may hold cursor data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    pub key: String,
    pub value: serde_json::Value,
    /// 1 on creation, +1 on every write.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// One append-only line of a lead's history: who did what, when, with which result. No secrets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    pub domain: Domain,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub result: String,
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A new entry with an id of its own.
    pub fn new(
        domain: Domain,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        result: &str,
        detail: Option<String>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            domain,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            result: result.to_owned(),
            detail,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ReferralRecord, RunStatus, StoredVersion, SyncRun, SyncState};
    use crate::rules::Version;

    #[test]
    fn a_stored_version_reads_what_the_record_s_version_is() {
        let record = |text: &str| {
            let referral = crate::referral::parse_referral(text).unwrap();
            ReferralRecord::from_referral(
                &referral,
                None,
                crate::rules::Eligibility::Eligible,
                chrono::Utc::now(),
            )
        };
        let versioned =
            record(r#"{"id":"r1","updatedDateTime":"2026-11-30T10:00:00.123Z","eTag":"\"7\""}"#);
        assert!(versioned.updated_date_time.is_some() && versioned.etag.is_some());
        for record in [versioned, record(r#"{"id":"r2"}"#)] {
            let json = serde_json::to_string(&record).unwrap();
            let stored: StoredVersion = serde_json::from_str(&json).unwrap();
            assert_eq!(Version::from(stored), record.version(), "{json}");
        }
    }

    #[test]
    fn when_sync_state_is_debug_printed_should_leave_the_value_out() {
        let state = SyncState {
            key: "cursor".to_owned(),
            value: serde_json::json!({"nextLink": "https://pc/next?$skiptoken=opaque"}),
            version: 3,
            updated_at: chrono::Utc::now(),
        };
        let printed = format!("{state:?}");
        assert!(
            printed.contains("cursor") && printed.contains("version: 3"),
            "{printed}"
        );
        assert!(!printed.contains("skiptoken"), "{printed}");
    }

    fn run(status: RunStatus, fetched: u32, enqueued: u32, stored: u32) -> SyncRun {
        SyncRun {
            status,
            fetched,
            enqueued,
            stored,
            ..SyncRun::start("r", chrono::Utc::now())
        }
    }

    #[test]
    fn when_ingest_has_stored_what_the_run_delivers_should_be_complete() {
        assert!(!run(RunStatus::Running, 10, 10, 10).is_complete());
        assert!(!run(RunStatus::Succeeded, 10, 10, 9).is_complete());
        assert!(run(RunStatus::Succeeded, 10, 10, 10).is_complete());
        // A failed run delivers only what it enqueued (or recorded itself) before failing.
        assert!(!run(RunStatus::Failed, 10, 6, 5).is_complete());
        assert!(run(RunStatus::Failed, 10, 6, 6).is_complete());
        // So does an abandoned one.
        assert!(!run(RunStatus::Abandoned, 10, 6, 5).is_complete());
        assert!(run(RunStatus::Abandoned, 10, 6, 6).is_complete());
        let with_invalid = SyncRun {
            recorded_invalid: 2,
            ..run(RunStatus::Failed, 10, 6, 6)
        };
        assert!(!with_invalid.is_complete(), "two enqueued ones are missing");
        assert!(
            SyncRun {
                stored: 8,
                ..with_invalid
            }
            .is_complete()
        );
    }

    #[test]
    fn when_a_status_is_named_should_match_its_serialized_form() {
        for status in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Abandoned,
        ] {
            assert_eq!(
                serde_json::to_value(status).expect("a status serializes"),
                serde_json::Value::from(status.as_str())
            );
        }
    }

    #[test]
    fn ingested_referrals_add_up_by_outcome_and_by_reason() {
        use crate::rules::{SkipReason, UpsertOutcome};
        let mut run = SyncRun::start("r", chrono::Utc::now());
        run.add_ingested(UpsertOutcome::Inserted, None);
        run.add_ingested(UpsertOutcome::Inserted, Some(SkipReason::NoDomain));
        run.add_ingested(UpsertOutcome::Updated, Some(SkipReason::NoDomain));
        run.add_ingested(UpsertOutcome::Unchanged, None);
        assert_eq!((run.stored, run.eligible), (4, 2));
        assert_eq!(
            run.skipped,
            std::collections::BTreeMap::from([("no_domain".to_owned(), 2)])
        );
        assert_eq!(
            run.outcomes,
            std::collections::BTreeMap::from([
                ("inserted".to_owned(), 2),
                ("unchanged".to_owned(), 1),
                ("updated".to_owned(), 1),
            ])
        );
    }
}
