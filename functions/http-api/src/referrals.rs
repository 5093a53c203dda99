//! The referral routes: the list with its filters, and one referral with its raw payload.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use hunter_core::ports::ReferralQuery;
use hunter_domain::model::{Arrival, ReferralRecord};
use hunter_domain::rules::{Domain, DomainSource, SkipReason};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};

/// `GET /referrals` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ReferralParams {
    /// Only referrals with this `status` (New, Active, Closed, ...).
    status: Option<String>,
    /// Only referrals with this `substatus`.
    substatus: Option<String>,
    /// Only eligible (true) or skipped (false) referrals.
    eligible: Option<bool>,
    /// Only referrals skipped for this reason.
    #[param(value_type = Option<SkipReason>)]
    skip_reason: Option<String>,
    /// Text in the name, customer, domain or id (case-insensitive).
    q: Option<String>,
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A referral as lists show it: the record without its raw payload.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReferralSummary {
    id: String,
    engagement_id: Option<String>,
    name: Option<String>,
    status: Option<String>,
    substatus: Option<String>,
    #[serde(rename = "type")]
    referral_type: Option<String>,
    qualification: Option<String>,
    direction: Option<String>,
    customer_name: Option<String>,
    customer_country: Option<String>,
    deal_value: Option<f64>,
    currency: Option<String>,
    domain: Option<Domain>,
    domain_source: Option<DomainSource>,
    eligible: bool,
    skip_reason: Option<SkipReason>,
    /// Why the reason applies, in words.
    skip_detail: Option<String>,
    created_date_time: Option<DateTime<Utc>>,
    updated_date_time: Option<DateTime<Utc>>,
    etag: Option<String>,
    /// When Hunter stored this version.
    synced_at: DateTime<Utc>,
    /// `webhook` or `sweep`.
    arrived_by: Arrival,
}

impl From<ReferralRecord> for ReferralSummary {
    fn from(r: ReferralRecord) -> Self {
        Self {
            id: r.id,
            engagement_id: r.engagement_id,
            name: r.name,
            status: r.status,
            substatus: r.substatus,
            referral_type: r.referral_type,
            qualification: r.qualification,
            direction: r.direction,
            customer_name: r.customer_name,
            customer_country: r.customer_country,
            deal_value: r.deal_value,
            currency: r.currency,
            domain: r.domain,
            domain_source: r.domain_source,
            eligible: r.eligible,
            skip_reason: r.skip_reason,
            skip_detail: r.skip_detail,
            created_date_time: r.created_date_time,
            updated_date_time: r.updated_date_time,
            etag: r.etag,
            synced_at: r.synced_at,
            arrived_by: r.arrived_by,
        }
    }
}

/// One page of referrals.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReferralPage {
    items: Vec<ReferralSummary>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// `GET /referrals`: referrals, newest first.
#[utoipa::path(get, path = "/referrals", tag = "referrals", params(ReferralParams),
    responses((status = 200, body = ReferralPage), (status = 400, body = ErrorBody), CommonErrors))]
pub(crate) async fn list_referrals(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<ReferralParams>,
) -> Result<Json<ReferralPage>, ApiError> {
    let skip_reason = given(params.skip_reason)
        .map(|r| {
            r.trim()
                .parse::<SkipReason>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let query = ReferralQuery {
        status: given(params.status),
        substatus: given(params.substatus),
        eligible: params.eligible,
        skip_reason,
        q: given(params.q),
        limit: params.limit,
        cursor: given(params.cursor),
    };
    let page = state.store.list_referrals(&query).await?;
    Ok(Json(ReferralPage {
        items: page.items.into_iter().map(ReferralSummary::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /referrals/{id}`: one referral with its eligibility, skip reason, domain and the raw
/// payload as received.
#[utoipa::path(get, path = "/referrals/{id}", tag = "referrals",
    params(("id" = String, Path, description = "The referral's Partner Center id")),
    responses((status = 200, body = ReferralRecord), (status = 404, body = ErrorBody), CommonErrors))]
pub(crate) async fn get_referral(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReferralRecord>, ApiError> {
    state
        .store
        .get_referral(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no referral {id}")))
}
