//! The HTTP side: routes, the Web API handler (auth, OData headers, limits, faults, then the
//! store or `$batch`), the token endpoint, the envelope middleware and the Dataverse-only control
//! routes.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post, put};
use axum::{Json, Router};
use hunter_core::dynamics::batch::Headers;
use serde_json::{Value, json};

use super::address::percent_decode;
use super::api::{ApiRequest, DvError, headers_of};
use super::change_tracking;
use super::limits::LimitsJson;
use super::{API_PREFIX, CODE_BAD_SEGMENT, DataverseSim, Faults, entity};
use crate::sim::control::{self, Controls, SimControl, control_routes};
use crate::sim::http::{AuthOk, Exchange};
use crate::sim::oauth;

/// Largest body read from a request.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

impl DataverseSim {
    /// The axum app. `OData-EntityId` URLs use the base URL set by [`DataverseSim::serve`]
    /// (or [`DataverseSim::set_base_url`]), else `http://{Host header}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/data/v9.2/{*rest}", any(api))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/_sim/limits",
                get(control_get_limits).put(control_put_limits),
            )
            .route(
                "/_sim/records/{set}",
                get(control_get_records).post(control_insert_record),
            )
            .route(
                "/_sim/records/{set}/{key}",
                patch(change_tracking::control_seller_update),
            )
            .route("/_sim/expire-tokens", put(control::expire_tokens::<Self>))
            .route(
                "/_sim/usage",
                get(control_get_usage).delete(control_reset_usage),
            )
            .merge(control_routes())
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), envelope))
            .with_state(self.clone())
    }
}

impl SimControl for DataverseSim {
    type Faults = Faults;
    const FAULTS_SET_EVENT: &'static str = "dataverse_sim_faults_set";
    const TOKENS_EXPIRED_EVENT: &'static str = "dataverse_sim_tokens_expired";

    fn with_controls<R>(&self, f: impl FnOnce(&mut Controls<Faults>) -> R) -> R {
        f(&mut self.lock().controls)
    }

    fn faults_refused(message: String) -> Response {
        DvError::bad_request("", message).into_response()
    }
}

/// `OData-MaxVersion`, `OData-Version` and `Accept` on every API request.
fn check_odata_headers(headers: &Headers) -> Result<(), DvError> {
    for name in ["OData-MaxVersion", "OData-Version"] {
        if headers.get(name).map(str::trim) != Some("4.0") {
            return Err(DvError::bad_request(
                "",
                format!("The request must carry the header '{name}: 4.0'."),
            ));
        }
    }
    let accept_ok = headers
        .get("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"));
    if !accept_ok {
        return Err(DvError::bad_request(
            "",
            "The request must carry the header 'Accept: application/json'.",
        ));
    }
    Ok(())
}

/// Every Web API request: auth, OData headers, service protection, latency, faults, then work.
async fn api(State(sim): State<DataverseSim>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let client = match sim.check_auth(&parts.headers) {
        Ok(client) => client,
        Err(error) => {
            let mut response = error.into_response();
            response.extensions_mut().insert(AuthOk(false));
            return response;
        }
    };
    let mut response = api_authorized(&sim, &client, parts, body).await;
    // Every answer of an authenticated call says what the user has left, counted after it
    // (a `$batch` with every request inside it).
    let remaining = {
        let mut inner = sim.lock();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            inner.protection.count_throttled(&client);
        }
        inner.protection.remaining(&client)
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-ratelimit-burst-remaining-xrm-requests",
        HeaderValue::from(remaining.burst),
    );
    headers.insert(
        "x-ms-ratelimit-time-remaining-xrm-requests",
        HeaderValue::from(remaining.time_ms),
    );
    response.extensions_mut().insert(AuthOk(true));
    response
}

async fn api_authorized(
    sim: &DataverseSim,
    client: &str,
    parts: axum::http::request::Parts,
    body: Body,
) -> Response {
    let headers = headers_of(&parts.headers);
    if let Err(error) = check_odata_headers(&headers) {
        return error.into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return DvError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
                "The request body is too large.",
            )
            .into_response();
        }
    };
    let in_flight = match sim.admit(client) {
        Ok(in_flight) => in_flight,
        Err(error) => return error.into_response(),
    };
    let latency = sim.lock().controls.faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let result = match sim.injected_fault() {
        Some(fault) => fault.into_sim(),
        None => {
            let base = sim.base_url(&parts.headers);
            let raw_path = parts.uri.path();
            let path = percent_decode(raw_path.strip_prefix(API_PREFIX).unwrap_or(raw_path), false);
            if path == "$batch" {
                if parts.method == Method::POST {
                    sim.batch(client, &headers, &body, &base)
                        .unwrap_or_else(DvError::into_sim)
                } else {
                    DvError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "",
                        "$batch accepts only POST.",
                    )
                    .into_sim()
                }
            } else {
                let request = ApiRequest {
                    method: parts.method.as_str().to_owned(),
                    path,
                    query: parts.uri.query().map(str::to_owned),
                    headers,
                    body: body.to_vec(),
                    content_id: None,
                };
                sim.lock().execute(&request, &base, &HashMap::new())
            }
        }
    };
    drop(in_flight);
    result.into_response()
}

/// Adds `request-id`, `x-ms-service-request-id`, `x-ms-dop-hint`; records and logs every request.
async fn envelope(State(sim): State<DataverseSim>, request: Request, next: Next) -> Response {
    let exchange = Exchange::begin(&request);
    let mut response = next.run(request).await;
    let dop_hint = sim.lock().dop_hint;
    let outcome = exchange.outcome(&mut response, &["request-id", "x-ms-service-request-id"]);
    response
        .headers_mut()
        .insert("x-ms-dop-hint", HeaderValue::from(dop_hint));
    exchange.log("dataverse_sim_request", &outcome, None);
    sim.lock().controls.requests.record(exchange, outcome, None);
    response
}

async fn token(
    State(sim): State<DataverseSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    oauth::token_answer(oauth::form_fields(form).and_then(|form| sim.token_grant(&form)))
}

async fn not_found(uri: Uri) -> Response {
    DvError::new(
        StatusCode::NOT_FOUND,
        CODE_BAD_SEGMENT,
        format!("No resource at '{}'.", uri.path()),
    )
    .into_response()
}

async fn control_get_limits(State(sim): State<DataverseSim>) -> Response {
    Json(LimitsJson::from(&sim.limits())).into_response()
}

async fn control_put_limits(State(sim): State<DataverseSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<LimitsJson>(&body) {
        Ok(limits) => {
            sim.set_limits(limits.into());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            DvError::bad_request("", format!("Limits JSON cannot be read: {e}")).into_response()
        }
    }
}

async fn control_get_usage(State(sim): State<DataverseSim>) -> Response {
    Json(sim.usage()).into_response()
}

async fn control_reset_usage(State(sim): State<DataverseSim>) -> StatusCode {
    sim.reset_usage();
    StatusCode::NO_CONTENT
}

async fn control_get_records(State(sim): State<DataverseSim>, Path(set): Path<String>) -> Response {
    if entity(&set).is_none() {
        return not_found(format!("/_sim/records/{set}").parse().unwrap_or_default()).await;
    }
    Json(sim.records(&set)).into_response()
}

async fn control_insert_record(
    State(sim): State<DataverseSim>,
    Path(set): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(record @ Value::Object(_)) if entity(&set).is_some() => {
            let id = sim.insert_record(&set, record);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        _ => DvError::bad_request("", "A JSON object for a known entity set is expected.")
            .into_response(),
    }
}
