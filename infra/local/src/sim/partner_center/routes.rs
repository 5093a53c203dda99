//! The HTTP side: routes, the API wrapper (latency, auth, faults, then the work), the token and
//! device code endpoints, the envelope middleware and the Partner Center-only control routes.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::{CONTINUATION_PATH, Decision, DeviceFlow, Faults, PartnerCenterSim, REFERRALS_PATH};
use crate::sim::control::{Controls, SimControl, control_routes};
use crate::sim::faults::{self, Scripted};
use crate::sim::http::{AuthOk, Exchange};
use crate::sim::oauth;

impl PartnerCenterSim {
    /// The axum app. nextLinks use the base URL set by [`PartnerCenterSim::serve`] (or
    /// [`PartnerCenterSim::set_base_url`]), else `http://{Host header}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(REFERRALS_PATH, get(list_referrals))
            .route(
                "/v1.0/engagements/referrals/{id}",
                get(get_referral).patch(patch_referral).put(put_referral),
            )
            .route(CONTINUATION_PATH, get(continuation_page))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/{tenant}/oauth2/token", post(token))
            .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
            .route(
                "/_sim/referrals",
                get(control_get_referrals).post(control_upsert_referrals),
            )
            .route("/_sim/device", get(control_device).put(control_set_device))
            .route("/_sim/device/approve", post(control_approve_sign_in))
            .route("/_sim/device/deny", post(control_deny_sign_in))
            .merge(super::webhooks::routes())
            .merge(control_routes())
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), envelope))
            .with_state(self.clone())
    }

    /// Latency, auth, then faults, then `handle`. Marks the answer with the auth outcome.
    pub(super) async fn api(
        &self,
        headers: &HeaderMap,
        list: bool,
        handle: impl FnOnce(&Self) -> Result<Response, ApiError>,
    ) -> Response {
        let latency = {
            let faults = &mut self.lock().controls.faults;
            let slow = match faults.slow_next_ms.is_empty() {
                true => 0,
                false => faults.slow_next_ms.remove(0),
            };
            faults.latency_ms + slow
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let auth = self.check_auth(headers);
        let auth_ok = auth.is_ok();
        let result = auth.and_then(|()| match self.injected_fault(list) {
            Some(fault) => Err(fault),
            None => handle(self),
        });
        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        response.extensions_mut().insert(AuthOk(auth_ok));
        response
    }

    /// The fault to answer instead of the request, if one is due (`fail_next` on list pages only).
    fn injected_fault(&self, list: bool) -> Option<ApiError> {
        let mut inner = self.lock();
        let retry_after = inner.controls.faults.retry_after_secs;
        if list {
            match faults::next_scripted(&mut inner.controls.faults.fail_next) {
                Scripted::Serve => return None,
                Scripted::Fail(status) => {
                    tracing::debug!(
                        event = "partner_center_sim_fault",
                        kind = "fail_next",
                        status
                    );
                    return Some(ApiError::simulated(status, retry_after));
                }
                Scripted::Nothing => {}
            }
        }
        let throttle = inner.controls.faults.throttle_rate;
        if faults::strikes(&mut inner.fault_rng, throttle) {
            tracing::debug!(
                event = "partner_center_sim_fault",
                kind = "throttle",
                status = 429
            );
            return Some(ApiError::simulated(429, retry_after));
        }
        let rate = inner.controls.faults.error_rate;
        let status = faults::server_error(&mut inner.fault_rng, rate)?;
        tracing::debug!(event = "partner_center_sim_fault", kind = "error", status);
        Some(ApiError::simulated(status, retry_after))
    }
}

impl SimControl for PartnerCenterSim {
    type Faults = Faults;
    const FAULTS_SET_EVENT: &'static str = "partner_center_sim_faults_set";
    const TOKENS_EXPIRED_EVENT: &'static str = "partner_center_sim_tokens_expired";

    fn with_controls<R>(&self, f: impl FnOnce(&mut Controls<Faults>) -> R) -> R {
        f(&mut self.lock().controls)
    }

    fn faults_refused(message: String) -> Response {
        ApiError::bad_request("InvalidFaults", message).into_response()
    }

    fn on_faults_replaced(&self) {
        self.lock().pages_since_faults = 0;
    }
}

/// Adds `request-id` (and echoes `client-request-id`), records and logs every request.
async fn envelope(State(sim): State<PartnerCenterSim>, request: Request, next: Next) -> Response {
    let exchange = Exchange::begin(&request);
    let client_request_id = request.headers().get("client-request-id").cloned();
    let mut response = next.run(request).await;
    let outcome = exchange.outcome(&mut response, &["request-id"]);
    if let Some(value) = &client_request_id {
        response
            .headers_mut()
            .insert("client-request-id", value.clone());
    }
    let client_request_id = client_request_id.and_then(|v| v.to_str().ok().map(str::to_owned));
    exchange.log(
        "partner_center_sim_request",
        &outcome,
        client_request_id.as_deref(),
    );
    sim.lock()
        .controls
        .requests
        .record(exchange, outcome, client_request_id);
    response
}

async fn list_referrals(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    sim.api(&headers, true, |sim| sim.first_page(&uri, &headers))
        .await
}

async fn continuation_page(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    sim.api(&headers, true, |sim| sim.continuation(&uri, &headers))
        .await
}

async fn get_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    sim.api(&headers, false, |sim| sim.get_one(&id)).await
}

async fn patch_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.patch(&id, &headers, &body))
        .await
}

async fn put_referral(
    State(sim): State<PartnerCenterSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.put(&id, &headers, &body))
        .await
}

async fn token(
    State(sim): State<PartnerCenterSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    oauth::token_answer(oauth::form_fields(form).and_then(|form| sim.token_grant(&form)))
}

async fn device_code(
    State(sim): State<PartnerCenterSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match oauth::form_fields(form).and_then(|form| sim.start_device_code(&form)) {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "ResourceNotFound",
        format!("No resource at '{}'.", uri.path()),
    )
    .into_response()
}

async fn control_get_referrals(State(sim): State<PartnerCenterSim>) -> Json<Vec<Value>> {
    Json(sim.referrals())
}

async fn control_upsert_referrals(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(referrals)) => {
            let upserted = referrals.len();
            sim.upsert_referrals(referrals);
            let total = sim.lock().referrals.len();
            Json(json!({"upserted": upserted, "total": total})).into_response()
        }
        Ok(_) => {
            ApiError::bad_request("InvalidReferrals", "A JSON array of referrals is expected.")
                .into_response()
        }
        Err(e) => ApiError::bad_request(
            "InvalidJson",
            format!("The request body is not valid JSON: {e}"),
        )
        .into_response(),
    }
}

/// `GET /_sim/device`: how sign-ins are answered, and the device codes waiting.
async fn control_device(State(sim): State<PartnerCenterSim>) -> Json<Value> {
    let flow = serde_json::to_value(sim.device_flow()).unwrap_or_default();
    let mut body = json!({ "pending": sim.pending_sign_ins() });
    if let (Value::Object(body), Value::Object(flow)) = (&mut body, flow) {
        body.extend(flow);
    }
    Json(body)
}

/// `PUT /_sim/device` `{"autoApproveAfterPolls": n | null, "slowDownNext": n}`.
async fn control_set_device(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<DeviceFlow>(&body) {
        Ok(flow) => {
            sim.set_device_flow(flow);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ApiError::bad_request(
            "InvalidDeviceFlow",
            format!("Device flow JSON cannot be read: {e}"),
        )
        .into_response(),
    }
}

/// `POST /_sim/device/approve` (`{"userCode": "..."}`, or nothing: every pending sign-in).
async fn control_approve_sign_in(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    decide_sign_in(&sim, &body, Decision::Approved)
}

/// `POST /_sim/device/deny` (`{"userCode": "..."}`, or nothing: every pending sign-in).
async fn control_deny_sign_in(State(sim): State<PartnerCenterSim>, body: Bytes) -> Response {
    decide_sign_in(&sim, &body, Decision::Denied)
}

fn decide_sign_in(sim: &PartnerCenterSim, body: &[u8], decision: Decision) -> Response {
    let user_code = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => value["userCode"].as_str().map(str::to_owned),
            Err(e) => {
                return ApiError::bad_request(
                    "InvalidJson",
                    format!("The request body is not valid JSON: {e}"),
                )
                .into_response();
            }
        }
    };
    let decided = sim.decide_sign_ins(user_code.as_deref(), decision);
    Json(json!({ "decided": decided })).into_response()
}
