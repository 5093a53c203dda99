//! The lead routes: the list with its filters and orders, the counts behind the KPI cards, one
//! lead with everything behind its score, a rescan, and a scan of any domain on demand.

pub(crate) mod export;

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use hunter_core::ports::{LeadQuery, LeadSort, MAX_PAGE_SIZE};
use hunter_core::scanning::scan_lead;
use hunter_domain::model::{AuditEntry, Lead, LeadReferral, ScoreChange, SyncStatus};
use hunter_domain::rules::{Domain, domain_from_url_or_host};
use hunter_domain::scan::{DomainScan, ScanState, Signals};
use hunter_domain::scoring::{
    Assessment, CommercialSegment, Heat, PriorityCategory, ScoreInput, ScoreLine, Segment,
    TenantSize, assess,
};
use hunter_domain::stats::LeadStats;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dynamics::queue_pushes;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{ApiState, LeadDomain, lead_of};

/// How many audit entries and referrals the lead view shows.
const DETAIL_ITEMS: usize = 50;

/// `GET /leads` and `GET /leads/export.csv` parameters, read as text and checked here so that a
/// bad one is a 400 that says which and why.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct LeadParams {
    /// Only leads of this segment.
    #[param(value_type = Option<Segment>)]
    segment: Option<String>,
    /// Only leads whose mail provider is this (`M365`, `Google`, ...).
    provider: Option<String>,
    /// Only leads of these priority categories, comma-separated (`P1,P2`).
    #[param(value_type = Option<String>, pattern = r"^(P[1-6])(,P[1-6])*$", example = "P1,P2")]
    priority_category: Option<String>,
    /// Only leads scoring at least this.
    #[param(value_type = Option<u8>, minimum = 0, maximum = 100)]
    min_score: Option<String>,
    /// Only leads with this Dynamics sync status.
    #[param(value_type = Option<SyncStatus>)]
    sync_status: Option<String>,
    /// Only leads whose last scan ended this way.
    #[param(value_type = Option<ScanState>)]
    scan_state: Option<String>,
    /// Text in the domain or company name (case-insensitive).
    q: Option<String>,
    /// The order (default `score`: highest first).
    #[param(value_type = Option<LeadOrder>)]
    sort: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The orders of a lead list (`-` reverses the score order).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub(crate) enum LeadOrder {
    #[serde(rename = "score")]
    Score,
    #[serde(rename = "-score")]
    ScoreAscending,
    #[serde(rename = "domain")]
    Domain,
    #[serde(rename = "referrals")]
    Referrals,
    #[serde(rename = "updated")]
    Updated,
}

impl From<LeadOrder> for LeadSort {
    fn from(order: LeadOrder) -> Self {
        match order {
            LeadOrder::Score => Self::Score,
            LeadOrder::ScoreAscending => Self::ScoreAscending,
            LeadOrder::Domain => Self::Domain,
            LeadOrder::Referrals => Self::Referrals,
            LeadOrder::Updated => Self::Updated,
        }
    }
}

fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parsed<T>(
    name: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    given(value)
        .map(|text| {
            parse(&text)
                .ok_or_else(|| ApiError::bad_request(format!("{name}={text:?} is not valid")))
        })
        .transpose()
}

/// A snake_case or lowercase name read as `T` (case-insensitive).
fn named<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::from(text.to_ascii_lowercase())).ok()
}

impl LeadParams {
    fn query(self) -> Result<LeadQuery, ApiError> {
        Ok(LeadQuery {
            segment: parsed("segment", self.segment, |s| Segment::from_str(s).ok())?,
            provider: given(self.provider),
            priority_categories: parsed("priorityCategory", self.priority_category, |s| {
                s.split(',')
                    .map(|c| PriorityCategory::from_str(c.trim()).ok())
                    .collect::<Option<Vec<_>>>()
            })?
            .unwrap_or_default(),
            min_score: parsed("minScore", self.min_score, |s| {
                s.parse::<u8>().ok().filter(|n| *n <= 100)
            })?,
            sync_status: parsed("syncStatus", self.sync_status, SyncStatus::parse)?,
            scan_state: parsed("scanState", self.scan_state, named::<ScanState>)?,
            q: given(self.q),
            sort: parsed("sort", self.sort, named::<LeadOrder>)?
                .map(LeadSort::from)
                .unwrap_or_default(),
            limit: parsed("limit", self.limit, |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            })?,
            cursor: given(self.cursor),
        })
    }
}

/// A lead as lists show it: everything but the breakdown, signals and history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeadSummary {
    domain: Domain,
    company_name: Option<String>,
    /// `M365`, `Google`, ..., `Local`, `Unknown`; null until scored.
    provider: Option<String>,
    tenant_size: Option<TenantSize>,
    /// 0..=100; null until a scan gave one.
    score: Option<u8>,
    segment: Option<Segment>,
    /// 1 (work first) ..= 7.
    priority: Option<u8>,
    priority_category: Option<PriorityCategory>,
    /// The category's name in the rules in force, e.g. "High Potential Greenfield".
    priority_category_label: Option<String>,
    /// What the category asks of a seller, e.g. "act within 48 h".
    seller_action: Option<String>,
    commercial_segment: Option<CommercialSegment>,
    commercial_heat: Option<Heat>,
    scan_state: ScanState,
    scanned_at: Option<DateTime<Utc>>,
    /// Why the last scan ended as it did, when it did not end `ok`.
    scan_detail: Option<String>,
    referral_count: u32,
    /// The newest referral ids, newest first (at most 20).
    referral_ids: Vec<String>,
    /// Referrals by type (`Shared`, `Independent`, ...).
    referral_types: BTreeMap<String, u32>,
    /// The most recently updated referral's contribution.
    latest: Option<LeadReferral>,
    /// Deal values summed per currency (`""`: none named).
    deal_values: BTreeMap<String, f64>,
    sync_status: SyncStatus,
    dynamics_id: Option<String>,
    last_synced_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    sync_attempts: u32,
    content_version: u64,
    synced_version: Option<u64>,
    /// The lead's status in Dynamics as sellers set it: `Open`, `Qualified`, `Disqualified`
    /// (null until pulled). Sellers own it: Hunter never pushes it.
    crm_status: Option<String>,
    /// The status reason in Dynamics (`New`, `Contacted`, `Qualified`, `Lost`, ...).
    crm_status_reason: Option<String>,
    /// The lead's owner in Dynamics (name, else id).
    crm_owner: Option<String>,
    crm_owner_id: Option<String>,
    /// The opportunity the lead was qualified into.
    crm_opportunity_id: Option<String>,
    /// `Open`, `Won`, `Lost`.
    crm_opportunity_status: Option<String>,
    /// When a seller last changed the lead in Dynamics.
    crm_updated_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl LeadSummary {
    pub(crate) fn of(state: &ApiState, lead: &Lead) -> Self {
        let category = lead
            .commercial_segment
            .map(|commercial| state.rules.scoring().priority_category(commercial));
        let crm = lead.crm.clone().unwrap_or_default();
        Self {
            domain: lead.domain.clone(),
            company_name: lead.company_name.clone(),
            provider: lead.provider.clone(),
            tenant_size: lead.tenant_size,
            score: lead.score,
            segment: lead.segment,
            priority: lead.priority,
            priority_category: lead.priority_category,
            priority_category_label: category.map(|c| c.label.clone()),
            seller_action: category.map(|c| c.seller_action.clone()),
            commercial_segment: lead.commercial_segment,
            commercial_heat: lead.commercial_heat,
            scan_state: lead.scan_state,
            scanned_at: lead.scanned_at,
            scan_detail: lead.scan_detail.clone(),
            referral_count: lead.referral_count,
            referral_ids: lead.referral_ids.clone(),
            referral_types: lead.referral_types.clone(),
            latest: lead.latest.clone(),
            deal_values: lead.deal_values.clone(),
            sync_status: lead.sync_status,
            dynamics_id: lead.dynamics_id.clone(),
            last_synced_at: lead.last_synced_at,
            last_error: lead.last_error.clone(),
            sync_attempts: lead.sync_attempts,
            content_version: lead.content_version,
            synced_version: lead.synced_version,
            crm_status: crm.status,
            crm_status_reason: crm.status_reason,
            crm_owner: crm.owner,
            crm_owner_id: crm.owner_id,
            crm_opportunity_id: crm.opportunity_id,
            crm_opportunity_status: crm.opportunity_status,
            crm_updated_at: crm.updated_at,
            updated_at: lead.updated_at,
        }
    }
}

/// One page of leads.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeadPage {
    items: Vec<LeadSummary>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// `GET /leads`: leads (one per domain), highest score first unless `sort` says otherwise.
#[utoipa::path(get, path = "/leads", tag = "leads", params(LeadParams),
    responses((status = 200, body = LeadPage), (status = 400, body = ErrorBody), CommonErrors))]
pub(crate) async fn list_leads(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<LeadParams>,
) -> Result<Json<LeadPage>, ApiError> {
    let page = state.store.list_leads(&params.query()?).await?;
    Ok(Json(LeadPage {
        items: page
            .items
            .iter()
            .map(|lead| LeadSummary::of(&state, lead))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A lead with everything behind its score.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeadDetail {
    #[serde(flatten)]
    summary: LeadSummary,
    /// One line per scoring rule that applied, in rule order; they add up to `score`.
    score_breakdown: Vec<ScoreLine>,
    /// What the last conclusive scan found.
    signals: Option<Signals>,
    /// Score, provider and segment changes, newest last.
    history: Vec<ScoreChange>,
    /// The lead's referrals (at most 50).
    referrals: Vec<LeadReferral>,
    /// Whether the lead has more referrals than `referrals` holds.
    more_referrals: bool,
    /// The Dynamics audit trail, newest first (at most 50).
    audit: Vec<AuditEntry>,
}

/// `GET /leads/{domain}`: the lead with its score breakdown, scan signals, referrals, Dynamics
/// sync state and audit trail.
#[utoipa::path(get, path = "/leads/{domain}", tag = "leads",
    params(LeadDomain),
    responses((status = 200, body = LeadDetail), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), CommonErrors))]
pub(crate) async fn get_lead(
    State(state): State<ApiState>,
    ApiPath(LeadDomain { domain }): ApiPath<LeadDomain>,
) -> Result<Json<LeadDetail>, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    let referrals = state
        .store
        .list_contributions(&lead.domain, Some(DETAIL_ITEMS), None)
        .await?;
    let audit = state.store.list_audit(&lead.domain, DETAIL_ITEMS).await?;
    Ok(Json(LeadDetail {
        summary: LeadSummary::of(&state, &lead),
        score_breakdown: lead.score_breakdown,
        signals: lead.signals,
        history: lead.history,
        referrals: referrals.items,
        more_referrals: referrals.next_cursor.is_some(),
        audit,
    }))
}

/// What a rescan found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rescanned {
    lead: LeadSummary,
    scan: DomainScan,
    /// Whether the lead's judgement changed (then a push to Dynamics is queued).
    changed: bool,
}

/// `POST /leads/{domain}/rescan`: scans the lead's domain now and answers the lead as scored;
/// a changed judgement is queued for Dynamics.
#[utoipa::path(post, path = "/leads/{domain}/rescan", tag = "leads",
    params(LeadDomain),
    responses((status = 200, body = Rescanned), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), CommonErrors))]
pub(crate) async fn rescan_lead(
    State(state): State<ApiState>,
    ApiPath(LeadDomain { domain }): ApiPath<LeadDomain>,
) -> Result<Json<Rescanned>, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    let scanned = scan_lead(
        state.store.as_ref(),
        state.scanner.as_ref(),
        state.rules.scoring(),
        &lead.domain,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no lead for {}", lead.domain)))?;
    if scanned.changed {
        queue_pushes(&state, std::slice::from_ref(&scanned.lead), false).await?;
    }
    Ok(Json(Rescanned {
        lead: LeadSummary::of(&state, &scanned.lead),
        scan: scanned.scan,
        changed: scanned.changed,
    }))
}

/// A domain to scan: a domain, host or URL (its registrable domain is scanned).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ScanRequest {
    #[schema(example = "contoso.com")]
    domain: String,
}

/// A scan on demand and what the rules make of it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Scanned {
    domain: Domain,
    scan: DomainScan,
    /// What the rules make of the scan; null when the scan failed (SERVFAIL, timeout).
    assessment: Option<Assessment>,
}

/// `POST /scan` `{"domain"}`: scans and scores a registrable domain on demand; no lead is
/// created.
#[utoipa::path(post, path = "/scan", tag = "leads", request_body = ScanRequest,
    responses((status = 200, body = Scanned), (status = 400, body = ErrorBody),
        (status = 413, body = ErrorBody), CommonErrors))]
pub(crate) async fn scan_domain(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<ScanRequest>,
) -> Result<Json<Scanned>, ApiError> {
    let domain = domain_from_url_or_host(&request.domain)
        .map_err(|e| ApiError::bad_request(format!("domain {:?}: {e}", request.domain)))?;
    let scan = state.scanner.scan(&domain).await;
    let input = ScoreInput {
        state: scan.state,
        signals: &scan.signals,
        co_sell: false,
        azure_tenant: false,
    };
    let assessment = assess(&input, state.rules.scoring());
    Ok(Json(Scanned {
        domain,
        scan,
        assessment,
    }))
}

/// A priority category and what it means, from the rules in force.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CategoryInfo {
    category: PriorityCategory,
    /// e.g. "High Potential Greenfield".
    label: String,
    /// e.g. "act within 48 h".
    seller_action: String,
    commercial_segment: CommercialSegment,
}

/// Every lead counted, and what each priority category means.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Stats {
    #[serde(flatten)]
    counts: LeadStats,
    categories: Vec<CategoryInfo>,
}

/// `GET /stats`: every lead counted (exactly) by segment, priority category, sync status, scan
/// state, provider and score band.
#[utoipa::path(get, path = "/stats", tag = "leads",
    responses((status = 200, body = Stats), CommonErrors))]
pub(crate) async fn stats(State(state): State<ApiState>) -> Result<Json<Stats>, ApiError> {
    let counts = state.store.lead_stats().await?;
    let scoring = state.rules.scoring();
    let categories = CommercialSegment::ALL
        .iter()
        .map(|commercial| {
            let info = scoring.priority_category(*commercial);
            CategoryInfo {
                category: info.category,
                label: info.label.clone(),
                seller_action: info.seller_action.clone(),
                commercial_segment: *commercial,
            }
        })
        .collect();
    Ok(Json(Stats { counts, categories }))
}
