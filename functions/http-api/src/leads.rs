//! The lead routes: the list with its filters and orders, one lead with everything behind its
//! score, a rescan, and a scan of any domain on demand.

use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hunter_core::ports::{LeadQuery, LeadSort, MAX_PAGE_SIZE};
use hunter_core::scanning::scan_lead;
use hunter_domain::model::{Lead, SyncStatus};
use hunter_domain::rules::domain_from_url_or_host;
use hunter_domain::scan::ScanState;
use hunter_domain::scoring::{CommercialSegment, ScoreInput, Segment, assess};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiState, lead_of, queue_pushes};

mod export;
pub(crate) use export::export_csv;

/// How many audit entries and referrals the lead view shows.
const DETAIL_ITEMS: usize = 50;

/// `GET /leads` parameters, as text: each is checked here so a bad one is a 400 that says why.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeadParams {
    segment: Option<String>,
    provider: Option<String>,
    min_score: Option<String>,
    sync_status: Option<String>,
    scan_state: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
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

impl LeadParams {
    fn query(self) -> Result<LeadQuery, ApiError> {
        let sort = parsed("sort", self.sort, |s| {
            LeadSort::NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(s))
                .map(|(_, sort)| *sort)
        })?;
        Ok(LeadQuery {
            segment: parsed("segment", self.segment, |s| Segment::from_str(s).ok())?,
            provider: given(self.provider),
            min_score: parsed("minScore", self.min_score, |s| {
                s.parse::<u8>().ok().filter(|n| *n <= 100)
            })?,
            sync_status: parsed("syncStatus", self.sync_status, |s| {
                serde_json::from_value::<SyncStatus>(Value::from(s.to_ascii_lowercase())).ok()
            })?,
            scan_state: parsed("scanState", self.scan_state, |s| {
                serde_json::from_value::<ScanState>(Value::from(s.to_ascii_lowercase())).ok()
            })?,
            q: given(self.q),
            sort: sort.unwrap_or_default(),
            limit: parsed("limit", self.limit, |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            })?,
            cursor: given(self.cursor),
        })
    }
}

/// `GET /leads`: leads (one per domain), highest score first unless `sort` says otherwise.
pub(crate) async fn list_leads(
    State(state): State<ApiState>,
    params: Result<Query<LeadParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = params.query()?;
    let page = state.store.list_leads(&query).await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|lead| lead_summary(&state, lead))
        .collect();
    Ok(Json(
        json!({"items": items, "nextCursor": page.next_cursor}),
    ))
}

/// A lead as lists show it: its fields and its category's label and seller action, without the
/// breakdown, signals and history.
fn lead_summary(state: &ApiState, lead: &Lead) -> Value {
    let mut value = lead_view(state, lead);
    if let Some(object) = value.as_object_mut() {
        for detail in ["scoreBreakdown", "signals", "history"] {
            object.remove(detail);
        }
    }
    value
}

/// A lead with its category's label and seller action (from the rules in force), without the
/// fields only the pipeline uses.
fn lead_view(state: &ApiState, lead: &Lead) -> Value {
    let mut value = serde_json::to_value(lead).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("scanClaimedAt");
        if let Some(commercial) = lead.commercial_segment {
            let info = state.rules.scoring().priority_category(commercial);
            object.insert("priorityCategoryLabel".to_owned(), json!(info.label));
            object.insert("sellerAction".to_owned(), json!(info.seller_action));
        }
    }
    value
}

/// `GET /stats`: every lead counted by segment, priority category, sync status, scan state,
/// provider and score band, with what each category means.
pub(crate) async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let stats = state.store.lead_stats().await?;
    let scoring = state.rules.scoring();
    let categories: Vec<Value> = CommercialSegment::ALL
        .iter()
        .map(|commercial| {
            let info = scoring.priority_category(*commercial);
            json!({
                "category": info.category,
                "label": info.label,
                "sellerAction": info.seller_action,
                "commercialSegment": commercial,
            })
        })
        .collect();
    let mut value = serde_json::to_value(&stats).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("categories".to_owned(), json!(categories));
    }
    Ok(Json(value))
}

/// `GET /leads/{domain}`: the lead with its score breakdown, scan signals, referrals, Dynamics
/// sync state and audit trail.
pub(crate) async fn get_lead(
    State(state): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lead = lead_of(&state, &domain).await?;
    let referrals = state
        .store
        .list_contributions(&lead.domain, Some(DETAIL_ITEMS), None)
        .await?;
    let audit = state.store.list_audit(&lead.domain, DETAIL_ITEMS).await?;
    let mut value = lead_view(&state, &lead);
    if let Some(object) = value.as_object_mut() {
        object.insert("referrals".to_owned(), json!(referrals.items));
        object.insert(
            "moreReferrals".to_owned(),
            json!(referrals.next_cursor.is_some()),
        );
        object.insert("audit".to_owned(), json!(audit));
    }
    Ok(Json(value))
}

/// `POST /leads/{domain}/rescan`: scans the lead's domain now and answers the lead as scored;
/// a changed judgement is queued for Dynamics.
pub(crate) async fn rescan_lead(
    State(state): State<ApiState>,
    Path(domain): Path<String>,
) -> Result<Response, ApiError> {
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
    Ok((
        StatusCode::OK,
        Json(json!({
            "lead": lead_summary(&state, &scanned.lead),
            "scan": scanned.scan,
            "changed": scanned.changed,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ScanRequest {
    domain: String,
}

/// `POST /scan` `{"domain"}` (a domain, host or URL): scans and scores its registrable domain on
/// demand; no lead is created.
pub(crate) async fn scan_domain(
    State(state): State<ApiState>,
    request: Result<Json<ScanRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = request.map_err(|e| {
        ApiError::bad_request(format!(
            "send a JSON body {{\"domain\": \"contoso.com\"}}: {}",
            e.body_text()
        ))
    })?;
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
    Ok(Json(json!({
        "domain": domain,
        "scan": scan,
        "assessment": assessment,
    })))
}
