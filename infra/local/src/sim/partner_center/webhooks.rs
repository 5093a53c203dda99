//! Partner Center webhooks: the registration API (`/webhooks/v1/registration`), the public
//! signing certificate, and signed `referral-created`/`referral-updated`/`test-created` events
//! POSTed to the registered URL by a background task, in order, with retries and injected loss
//! ([`Faults::webhook_loss_rate`](super::Faults::webhook_loss_rate)).
//!
//! An event body is compact JSON, signed as Partner Center signs it: RSA PKCS#1 v1.5 SHA-256 over
//! the exact body bytes, base64 in `Authorization: Signature ...`, with `x-ms-certificate-url`
//! naming the certificate whose public key verifies it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::error::ApiError;
use super::state::Inner;
use super::{PartnerCenterSim, REFERRALS_PATH};
use crate::sim::{faults, http};

/// Path of the registration API.
const REGISTRATION_PATH: &str = "/webhooks/v1/registration";
/// Path of the signing certificate (public, no auth).
pub const WEBHOOK_CERTIFICATE_PATH: &str = "/webhooks/cert/pcnotifications.cer";
/// The events a registration can list, as `GET /webhooks/v1/registration/events` answers them.
pub const SUPPORTED_WEBHOOK_EVENTS: [&str; 3] = [REFERRAL_CREATED, REFERRAL_UPDATED, TEST_CREATED];

const REFERRAL_CREATED: &str = "referral-created";
const REFERRAL_UPDATED: &str = "referral-updated";
const TEST_CREATED: &str = "test-created";

/// The certificate (DER) whose public key verifies event signatures.
const CERTIFICATE: &[u8] = include_bytes!("webhook_signer/cert.cer");
/// The private key (PKCS#8 DER) events are signed with. A simulator-only key, published in this
/// repository: it proves nothing outside the simulator.
const SIGNING_KEY: &[u8] = include_bytes!("webhook_signer/key.pk8.der");

/// Delivery attempts of one event, in all (Partner Center's documented count).
const MAX_ATTEMPTS: u32 = 10;
/// Wait after failed attempt `n`: `n` times this.
const BACKOFF_STEP: Duration = Duration::from_millis(50);
/// Longest wait for the receiver's answer to one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The tenant's webhook registration (Partner Center keeps one per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookRegistration {
    /// Id of the registration, new with every `POST`.
    pub subscriber_id: String,
    /// Absolute http(s) URL events are POSTed to.
    pub webhook_url: String,
    /// Names of the events sent (from [`SUPPORTED_WEBHOOK_EVENTS`]).
    pub webhook_events: Vec<String>,
}

/// What became of the webhook events so far (`GET /_sim/webhooks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStats {
    /// Events handed to the delivery task (delivered, failed or still on their way).
    pub queued: u64,
    /// Events dropped by the injected loss, never sent.
    pub dropped: u64,
    /// Events the receiver answered 2xx.
    pub delivered: u64,
    /// Events given up on: no 2xx in `MAX_ATTEMPTS` (10) attempts, or not sendable at all.
    pub failed: u64,
    /// POSTs made, first attempts and retries.
    pub attempts: u64,
}

/// The webhook state the simulator's lock guards.
#[derive(Debug, Default)]
pub(super) struct Webhooks {
    registration: Option<WebhookRegistration>,
    counters: Arc<Counters>,
    outbox: Option<UnboundedSender<Outgoing>>,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
}

/// An event on its way to the receiver.
#[derive(Debug)]
struct Outgoing {
    event_name: &'static str,
    resource_uri: String,
    target: String,
    certificate_url: String,
    body: Bytes,
}

/// An event body; the field order is the order Partner Center sends.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventBody<'a> {
    event_name: &'a str,
    resource_uri: &'a str,
    resource_name: &'a str,
    audit_uri: Option<&'a str>,
    resource_change_utc_date: String,
}

/// The body of `POST|PUT /webhooks/v1/registration`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegistrationRequest {
    webhook_url: Option<String>,
    webhook_events: Option<Vec<String>>,
}

/// Why an event was not delivered.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("the signing key cannot be read: {0}")]
    Key(aws_lc_rs::error::KeyRejected),
    #[error("the delivery client cannot be built: {0}")]
    Client(reqwest::Error),
    #[error("the body cannot be signed")]
    Sign,
    #[error("no tokio runtime to deliver on")]
    NoRuntime,
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("the receiver cannot be reached: {0}")]
    Connection(reqwest::Error),
}

impl Counters {
    fn snapshot(&self) -> WebhookStats {
        WebhookStats {
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, event: &Outgoing, attempts: u32, error: &DeliveryError) {
        Self::bump(&self.failed);
        tracing::warn!(
            event = "sim_webhook_failed",
            event_name = event.event_name,
            resource_uri = %event.resource_uri,
            target = %event.target,
            attempts,
            error = %error,
        );
    }
}

impl Webhooks {
    /// The registered URL, if the registration lists `event_name`.
    fn target_of(&self, event_name: &str) -> Option<String> {
        self.registration
            .as_ref()
            .filter(|r| r.webhook_events.iter().any(|e| e == event_name))
            .map(|r| r.webhook_url.clone())
    }

    /// Starts the delivery task on the current tokio runtime unless one is running; whether one
    /// is running now.
    fn start_worker(&mut self) -> bool {
        if self.outbox.as_ref().is_some_and(|o| !o.is_closed()) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let (outbox, events) = mpsc::unbounded_channel();
        runtime.spawn(deliver_in_order(events, Arc::clone(&self.counters)));
        self.outbox = Some(outbox);
        true
    }

    fn enqueue(&mut self, event: Outgoing) {
        Counters::bump(&self.counters.queued);
        if !self.start_worker() {
            self.counters.fail(&event, 0, &DeliveryError::NoRuntime);
            return;
        }
        if let Some(outbox) = &self.outbox {
            if let Err(mpsc::error::SendError(event)) = outbox.send(event) {
                self.counters.fail(&event, 0, &DeliveryError::NoRuntime);
            }
        }
    }
}

impl Inner {
    /// Sends `referral-created` (`created`) or `referral-updated` for referral `id`, if the
    /// registration lists it.
    pub(super) fn referral_changed(&mut self, id: &str, created: bool) {
        let event_name = if created {
            REFERRAL_CREATED
        } else {
            REFERRAL_UPDATED
        };
        if self.webhooks.target_of(event_name).is_none() {
            return;
        }
        let uri = format!("{}{REFERRALS_PATH}/{id}", self.public_base_url());
        self.emit(event_name, "referral", uri);
    }

    /// Queues `event_name` about `resource_uri` for the registered URL, unless the registration
    /// does not list it or the injected loss drops it.
    fn emit(&mut self, event_name: &'static str, resource_name: &str, resource_uri: String) {
        let Some(target) = self.webhooks.target_of(event_name) else {
            return;
        };
        if faults::strikes(&mut self.fault_rng, self.controls.faults.webhook_loss_rate) {
            Counters::bump(&self.webhooks.counters.dropped);
            tracing::info!(
                event = "sim_webhook_dropped",
                event_name,
                resource_uri = %resource_uri,
                reason = "webhook_loss_rate",
            );
            return;
        }
        let body = EventBody {
            event_name,
            resource_uri: &resource_uri,
            resource_name,
            audit_uri: None,
            resource_change_utc_date: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let certificate_url = format!("{}{WEBHOOK_CERTIFICATE_PATH}", self.public_base_url());
        self.webhooks.enqueue(Outgoing {
            event_name,
            resource_uri,
            target,
            certificate_url,
            body,
        });
    }

    /// The base URL of nextLinks (`http://localhost` until one is set).
    fn public_base_url(&self) -> String {
        http::base_url(self.base_url.clone(), &HeaderMap::new())
    }

    /// A random (version 4) UUID from the seeded RNG.
    fn random_uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.id_rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string()
    }
}

impl PartnerCenterSim {
    /// The webhook registration, if there is one.
    pub fn webhook_registration(&self) -> Option<WebhookRegistration> {
        self.lock().webhooks.registration.clone()
    }

    /// What became of the webhook events so far.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.lock().webhooks.counters.snapshot()
    }

    /// `{base_url}/webhooks/cert/pcnotifications.cer`, the `x-ms-certificate-url` of events.
    pub fn webhook_certificate_url(&self) -> String {
        format!(
            "{}{WEBHOOK_CERTIFICATE_PATH}",
            self.lock().public_base_url()
        )
    }

    /// Starts the task that delivers webhook events (otherwise started by the first event).
    pub(super) fn start_webhook_delivery(&self) {
        self.lock().webhooks.start_worker();
    }

    /// `POST` (`replace`: a new registration, replacing any) or `PUT` (an update of the one
    /// there is) of the registration.
    fn register_webhook(&self, body: &[u8], replace: bool) -> Result<Response, ApiError> {
        let (webhook_url, webhook_events) = read_registration(body)?;
        let mut inner = self.lock();
        let subscriber_id = match (&inner.webhooks.registration, replace) {
            (_, true) => inner.random_uuid(),
            (Some(current), false) => current.subscriber_id.clone(),
            (None, false) => return Err(registration_not_found()),
        };
        let registration = WebhookRegistration {
            subscriber_id,
            webhook_url,
            webhook_events,
        };
        inner.webhooks.registration = Some(registration.clone());
        drop(inner);
        tracing::info!(
            event = "partner_center_sim_webhook_registered",
            subscriber_id = %registration.subscriber_id,
            webhook_url = %registration.webhook_url,
            webhook_events = ?registration.webhook_events,
        );
        Ok(Json(registration).into_response())
    }

    fn get_webhook_registration(&self) -> Result<Response, ApiError> {
        let registration = self
            .webhook_registration()
            .ok_or_else(registration_not_found)?;
        Ok(Json(registration).into_response())
    }

    fn delete_webhook_registration(&self) -> Result<Response, ApiError> {
        let removed = self.lock().webhooks.registration.take();
        let removed = removed.ok_or_else(registration_not_found)?;
        tracing::info!(
            event = "partner_center_sim_webhook_deleted",
            subscriber_id = %removed.subscriber_id,
        );
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// Sends a `test-created` event (the registration must list it).
    fn send_validation_event(&self) -> Result<Response, ApiError> {
        let mut inner = self.lock();
        if inner.webhooks.target_of(TEST_CREATED).is_none() {
            return Err(ApiError::bad_request(
                "WebhookEventNotRegistered",
                format!("No webhook registration lists '{TEST_CREATED}'."),
            ));
        }
        let correlation_id = inner.random_uuid();
        let uri = format!(
            "{}{REGISTRATION_PATH}/validationEvents/{correlation_id}",
            inner.public_base_url()
        );
        inner.emit(TEST_CREATED, "test", uri);
        Ok(Json(json!({ "correlationId": correlation_id })).into_response())
    }
}

/// The webhook routes: the registration API (through the API wrapper: latency, auth, faults),
/// the public certificate and `GET /_sim/webhooks`.
pub(super) fn routes() -> Router<PartnerCenterSim> {
    Router::new()
        .route(
            REGISTRATION_PATH,
            get(get_registration)
                .post(create_registration)
                .put(update_registration)
                .delete(delete_registration),
        )
        .route("/webhooks/v1/registration/events", get(supported_events))
        .route(
            "/webhooks/v1/registration/validationEvents",
            post(validation_event),
        )
        .route(WEBHOOK_CERTIFICATE_PATH, get(certificate))
        .route("/_sim/webhooks", get(control_webhooks))
}

async fn create_registration(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.register_webhook(&body, true))
        .await
}

async fn update_registration(
    State(sim): State<PartnerCenterSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.api(&headers, false, |sim| sim.register_webhook(&body, false))
        .await
}

async fn get_registration(State(sim): State<PartnerCenterSim>, headers: HeaderMap) -> Response {
    sim.api(&headers, false, PartnerCenterSim::get_webhook_registration)
        .await
}

async fn delete_registration(State(sim): State<PartnerCenterSim>, headers: HeaderMap) -> Response {
    sim.api(
        &headers,
        false,
        PartnerCenterSim::delete_webhook_registration,
    )
    .await
}

async fn supported_events(State(sim): State<PartnerCenterSim>, headers: HeaderMap) -> Response {
    sim.api(&headers, false, |_| {
        Ok(Json(SUPPORTED_WEBHOOK_EVENTS).into_response())
    })
    .await
}

async fn validation_event(State(sim): State<PartnerCenterSim>, headers: HeaderMap) -> Response {
    sim.api(&headers, false, PartnerCenterSim::send_validation_event)
        .await
}

async fn certificate() -> Response {
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        CERTIFICATE,
    )
        .into_response()
}

/// `GET /_sim/webhooks`: the counters, and the registration (`null` when none).
async fn control_webhooks(State(sim): State<PartnerCenterSim>) -> Response {
    #[derive(Serialize)]
    struct View {
        #[serde(flatten)]
        stats: WebhookStats,
        registration: Option<WebhookRegistration>,
    }
    Json(View {
        stats: sim.webhook_stats(),
        registration: sim.webhook_registration(),
    })
    .into_response()
}

fn registration_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "WebhookRegistrationNotFound",
        "No webhook registration exists.",
    )
}

/// The URL and the events (canonical names, no repeats) of a registration body.
fn read_registration(body: &[u8]) -> Result<(String, Vec<String>), ApiError> {
    let request: RegistrationRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "InvalidJson",
            format!("The request body is not a webhook registration: {e}"),
        )
    })?;
    let url = request.webhook_url.unwrap_or_default();
    let parsed = url::Url::parse(url.trim()).map_err(|_| invalid_url(&url))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid_url(&url));
    }
    let mut events: Vec<String> = Vec::new();
    for name in request.webhook_events.unwrap_or_default() {
        let canonical = SUPPORTED_WEBHOOK_EVENTS
            .into_iter()
            .find(|e| e.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "UnsupportedWebhookEvent",
                    format!(
                        "Webhook event '{name}' is not supported; supported: {}.",
                        SUPPORTED_WEBHOOK_EVENTS.join(", ")
                    ),
                )
            })?;
        if !events.iter().any(|e| e == canonical) {
            events.push(canonical.to_owned());
        }
    }
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "InvalidWebhookEvents",
            "WebhookEvents must list at least one event.",
        ));
    }
    Ok((url.trim().to_owned(), events))
}

fn invalid_url(url: &str) -> ApiError {
    ApiError::bad_request(
        "InvalidWebhookUrl",
        format!("WebhookUrl '{url}' is not an absolute http or https URL."),
    )
}

/// The `Authorization` value the simulator sends with `body` (`Signature <base64>`), for tests
/// that post events themselves; `None` if the key cannot sign.
pub fn webhook_authorization(body: &[u8]) -> Option<String> {
    let key = RsaKeyPair::from_pkcs8(SIGNING_KEY).ok()?;
    let signature = signature_of(&key, &SystemRandom::new(), body)?;
    Some(format!("Signature {signature}"))
}

/// Base64 of the RSA PKCS#1 v1.5 SHA-256 signature of `body`; `None` if the key cannot sign.
fn signature_of(key: &RsaKeyPair, rng: &SystemRandom, body: &[u8]) -> Option<String> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, rng, body, &mut signature)
        .ok()?;
    Some(STANDARD.encode(signature))
}

/// Signs and POSTs events.
struct Courier {
    client: reqwest::Client,
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl Courier {
    fn new() -> Result<Self, DeliveryError> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .map_err(DeliveryError::Client)?,
            key: RsaKeyPair::from_pkcs8(SIGNING_KEY).map_err(DeliveryError::Key)?,
            rng: SystemRandom::new(),
        })
    }

    /// Base64 of the RSA PKCS#1 v1.5 SHA-256 signature of `body`.
    fn sign(&self, body: &[u8]) -> Result<String, DeliveryError> {
        signature_of(&self.key, &self.rng, body).ok_or(DeliveryError::Sign)
    }

    /// Up to [`MAX_ATTEMPTS`] POSTs of `event`, until one is answered 2xx.
    async fn deliver(&self, counters: &Counters, event: Outgoing) {
        let signature = match self.sign(&event.body) {
            Ok(signature) => signature,
            Err(error) => return counters.fail(&event, 0, &error),
        };
        let mut attempt = 1;
        loop {
            Counters::bump(&counters.attempts);
            let error = match self.post(&event, &signature).await {
                Ok(()) => {
                    Counters::bump(&counters.delivered);
                    tracing::debug!(
                        event = "sim_webhook_delivered",
                        event_name = event.event_name,
                        resource_uri = %event.resource_uri,
                        attempts = attempt,
                    );
                    return;
                }
                Err(error) => error,
            };
            if attempt >= MAX_ATTEMPTS {
                return counters.fail(&event, attempt, &error);
            }
            tokio::time::sleep(BACKOFF_STEP * attempt).await;
            attempt += 1;
        }
    }

    async fn post(&self, event: &Outgoing, signature: &str) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(&event.target)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Signature {signature}"))
            .header("x-ms-certificate-url", &event.certificate_url)
            .header("x-ms-signature-algorithm", "rsa-sha256")
            .body(event.body.clone())
            .send()
            .await
            .map_err(DeliveryError::Connection)?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(DeliveryError::Status(status.as_u16())),
        }
    }
}

/// Delivers the events of `events` one after the other, until every sender is gone.
async fn deliver_in_order(mut events: UnboundedReceiver<Outgoing>, counters: Arc<Counters>) {
    let courier = Courier::new();
    if let Err(error) = &courier {
        tracing::error!(event = "sim_webhook_courier_unavailable", error = %error);
    }
    while let Some(event) = events.recv().await {
        match &courier {
            Ok(courier) => courier.deliver(&counters, event).await,
            Err(error) => counters.fail(&event, 0, error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Instant;

    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use reqwest::Method;
    use serde_json::Value;

    use super::*;
    use crate::sim::control::SimControl as _;
    use crate::sim::partner_center::{Faults, RunningSim, SimConfig};
    use crate::sim::server::{ServerTask, bind};

    /// One POST the receiver got.
    #[derive(Debug, Clone)]
    struct Received {
        headers: HeaderMap,
        body: Bytes,
    }

    /// What the receiver records, and the statuses it answers (in order, then `otherwise`).
    #[derive(Clone)]
    struct Script {
        received: Arc<Mutex<Vec<Received>>>,
        statuses: Arc<Mutex<VecDeque<u16>>>,
        otherwise: u16,
    }

    /// A webhook receiver on `127.0.0.1:0`.
    struct Receiver {
        url: String,
        script: Script,
        _server: ServerTask,
    }

    impl Receiver {
        async fn start(statuses: &[u16], otherwise: u16) -> Self {
            let script = Script {
                received: Arc::default(),
                statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
                otherwise,
            };
            let bound = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let app = Router::new()
                .route("/hook", post(receive))
                .with_state(script.clone());
            Self {
                url: format!("{}/hook", bound.base_url),
                script,
                _server: ServerTask::spawn(bound.listener, app),
            }
        }

        fn received(&self) -> Vec<Received> {
            self.script.received.lock().unwrap().clone()
        }

        /// The bodies received, parsed.
        fn events(&self) -> Vec<Value> {
            self.received()
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect()
        }
    }

    async fn receive(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
        script
            .received
            .lock()
            .unwrap()
            .push(Received { headers, body });
        let status = script.statuses.lock().unwrap().pop_front();
        StatusCode::from_u16(status.unwrap_or(script.otherwise)).unwrap()
    }

    /// The simulator serving referral `r1`, and a client with a valid token.
    struct Fixture {
        running: RunningSim,
        http: reqwest::Client,
        token: String,
    }

    impl Fixture {
        async fn start() -> Self {
            let referral = json!({"id": "r1", "status": "New", "eTag": "\"e1\""});
            let running = PartnerCenterSim::new(vec![referral], SimConfig::default())
                .serve("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let token = running.sim.issue_access_token();
            Self {
                running,
                http: reqwest::Client::new(),
                token,
            }
        }

        fn sim(&self) -> &PartnerCenterSim {
            &self.running.sim
        }

        async fn call(
            &self,
            method: Method,
            path: &str,
            body: Option<Value>,
            token: bool,
        ) -> (u16, Value) {
            let mut request = self
                .http
                .request(method, format!("{}{path}", self.running.base_url))
                .header("If-Match", "*");
            if token {
                request = request.bearer_auth(&self.token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }

        async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
            self.call(method, path, body, true).await
        }

        async fn register(&self, url: &str, events: &[&str]) -> Value {
            let body = json!({"WebhookUrl": url, "WebhookEvents": events});
            let (status, answer) = self.api(Method::POST, REGISTRATION_PATH, Some(body)).await;
            assert_eq!(status, 200, "{answer}");
            answer
        }

        async fn patch_r1(&self, status: &str) {
            let ops = json!([{"op": "replace", "path": "/status", "value": status}]);
            let path = format!("{REFERRALS_PATH}/r1");
            let (answer, body) = self.api(Method::PATCH, &path, Some(ops)).await;
            assert_eq!(answer, 204, "{body}");
        }
    }

    /// The stats once `done` holds (panics after 10 s).
    async fn stats_when(
        sim: &PartnerCenterSim,
        done: impl Fn(&WebhookStats) -> bool,
    ) -> WebhookStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = sim.webhook_stats();
            if done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "timed out: {stats:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn inner_code(answer: &Value) -> &str {
        answer["error"]["innerError"]["code"].as_str().unwrap_or("")
    }

    /// The public key of the signing key, as `RSAPublicKey` DER.
    fn public_key() -> Vec<u8> {
        let key = RsaKeyPair::from_pkcs8(SIGNING_KEY).unwrap();
        key.public_key().as_ref().to_vec()
    }

    fn verifies(public_key: &[u8], received: &Received) -> bool {
        let authorization = received.headers["authorization"].to_str().unwrap();
        let signature = STANDARD
            .decode(authorization.strip_prefix("Signature ").unwrap())
            .unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
            .verify(&received.body, &signature)
            .is_ok()
    }

    #[tokio::test]
    async fn registration_answers_crud_and_refuses_what_partner_center_refuses() {
        let f = Fixture::start().await;
        let hook = "https://example.com/hook";
        let created = json!({"WebhookUrl": hook, "WebhookEvents": ["referral-created"]});

        let (status, _) = f
            .call(
                Method::POST,
                REGISTRATION_PATH,
                Some(created.clone()),
                false,
            )
            .await;
        assert_eq!(status, 401);
        for (body, code) in [
            (
                json!({"WebhookEvents": ["referral-created"]}),
                "InvalidWebhookUrl",
            ),
            (
                json!({"WebhookUrl": "not a url", "WebhookEvents": ["referral-created"]}),
                "InvalidWebhookUrl",
            ),
            (
                json!({"WebhookUrl": "/relative", "WebhookEvents": ["referral-created"]}),
                "InvalidWebhookUrl",
            ),
            (
                json!({"WebhookUrl": "ftp://example.com/x", "WebhookEvents": ["referral-created"]}),
                "InvalidWebhookUrl",
            ),
            (
                json!({"WebhookUrl": hook, "WebhookEvents": []}),
                "InvalidWebhookEvents",
            ),
            (
                json!({"WebhookUrl": hook, "WebhookEvents": ["referral-deleted"]}),
                "UnsupportedWebhookEvent",
            ),
            (json!(["not", "an", "object"]), "InvalidJson"),
        ] {
            let (status, answer) = f.api(Method::POST, REGISTRATION_PATH, Some(body)).await;
            assert_eq!((status, inner_code(&answer)), (400, code), "{answer}");
        }
        for method in [Method::GET, Method::DELETE] {
            let (status, answer) = f.api(method, REGISTRATION_PATH, None).await;
            assert_eq!(status, 404, "{answer}");
        }
        let (status, _) = f
            .api(Method::PUT, REGISTRATION_PATH, Some(created.clone()))
            .await;
        assert_eq!(status, 404);
        assert_eq!(f.sim().webhook_registration(), None);

        let (status, events) = f
            .api(Method::GET, "/webhooks/v1/registration/events", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            events,
            json!(["referral-created", "referral-updated", "test-created"])
        );

        let first = f.register(hook, &["referral-created"]).await;
        let subscriber = first["SubscriberId"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&subscriber).is_ok(), "{first}");
        assert_eq!(
            first,
            json!({"SubscriberId": subscriber, "WebhookUrl": hook, "WebhookEvents": ["referral-created"]})
        );
        assert_eq!(
            f.api(Method::GET, REGISTRATION_PATH, None).await,
            (200, first.clone())
        );
        assert_eq!(
            serde_json::to_value(f.sim().webhook_registration().unwrap()).unwrap(),
            first
        );

        let update = json!({"WebhookUrl": "http://example.com/other", "WebhookEvents": ["referral-updated", "test-created"]});
        let (status, updated) = f.api(Method::PUT, REGISTRATION_PATH, Some(update)).await;
        assert_eq!(status, 200);
        assert_eq!(
            updated,
            json!({"SubscriberId": subscriber, "WebhookUrl": "http://example.com/other", "WebhookEvents": ["referral-updated", "test-created"]})
        );
        let replaced = f.register(hook, &["referral-updated"]).await;
        assert_ne!(replaced["SubscriberId"], json!(subscriber));
        assert_eq!(
            f.api(Method::GET, REGISTRATION_PATH, None).await,
            (200, replaced.clone())
        );

        let (status, control) = f.call(Method::GET, "/_sim/webhooks", None, false).await;
        assert_eq!(status, 200);
        assert_eq!(
            control,
            json!({"queued": 0, "dropped": 0, "delivered": 0, "failed": 0, "attempts": 0, "registration": replaced})
        );

        f.sim().set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        });
        let (status, _) = f.api(Method::GET, REGISTRATION_PATH, None).await;
        assert!(matches!(status, 500 | 503), "{status}");
        let certificate = f
            .http
            .get(f.sim().webhook_certificate_url())
            .send()
            .await
            .unwrap();
        assert_eq!(certificate.status(), 200);
        assert_eq!(
            certificate.headers()["content-type"],
            "application/pkix-cert"
        );
        assert_eq!(certificate.bytes().await.unwrap().as_ref(), CERTIFICATE);
        f.sim().set_faults(Faults::default());

        let (status, _) = f.api(Method::DELETE, REGISTRATION_PATH, None).await;
        assert_eq!(status, 204);
        assert_eq!(f.api(Method::GET, REGISTRATION_PATH, None).await.0, 404);
        assert_eq!(f.sim().webhook_registration(), None);
    }

    #[tokio::test]
    async fn a_patch_sends_one_referral_updated_event_signed_with_the_certificates_key() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        f.register(&receiver.url, &["referral-created", "referral-updated"])
            .await;
        f.patch_r1("Active").await;

        let stats = stats_when(f.sim(), |s| s.delivered == 1).await;
        assert_eq!(
            stats,
            WebhookStats {
                queued: 1,
                delivered: 1,
                attempts: 1,
                ..WebhookStats::default()
            }
        );
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        let event = &received[0];
        let base = &f.running.base_url;
        let text = std::str::from_utf8(&event.body).unwrap();
        let start = format!(
            r#"{{"EventName":"referral-updated","ResourceUri":"{base}/v1.0/engagements/referrals/r1","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":""#
        );
        assert!(text.starts_with(&start), "{text}");
        assert!(text.ends_with("\"}"), "{text}");
        let date = serde_json::from_str::<Value>(text).unwrap()["ResourceChangeUtcDate"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(date.ends_with('Z'), "{date}");
        let date = chrono::DateTime::parse_from_rfc3339(&date).unwrap();
        assert!((Utc::now() - date.to_utc()).num_seconds().abs() < 60);

        assert_eq!(event.headers["content-type"], "application/json");
        assert_eq!(event.headers["x-ms-signature-algorithm"], "rsa-sha256");
        let certificate_url = format!("{base}/webhooks/cert/pcnotifications.cer");
        assert_eq!(
            event.headers["x-ms-certificate-url"],
            certificate_url.as_str()
        );
        assert_eq!(f.sim().webhook_certificate_url(), certificate_url);

        let certificate = f.http.get(&certificate_url).send().await.unwrap();
        let certificate = certificate.bytes().await.unwrap();
        let public_key = public_key();
        assert!(
            certificate
                .windows(public_key.len())
                .any(|w| w == public_key.as_slice()),
            "the certificate holds the signing key's public key"
        );
        assert!(verifies(&public_key, event));
        let tampered = Received {
            headers: event.headers.clone(),
            body: Bytes::from(text.replace("referral-updated", "referral-created")),
        };
        assert!(!verifies(&public_key, &tampered));
    }

    #[tokio::test]
    async fn every_kind_of_change_sends_its_event_in_order() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        f.register(&receiver.url, &["referral-created", "referral-updated"])
            .await;

        f.sim().upsert_referrals(vec![json!({"id": "r2"})]);
        f.sim()
            .upsert_referrals(vec![json!({"id": "r1", "status": "Closed"})]);
        let (status, _) = f
            .call(
                Method::POST,
                "/_sim/referrals",
                Some(json!([{"id": "r3"}, {"no": "id"}])),
                false,
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = f
            .api(
                Method::PUT,
                &format!("{REFERRALS_PATH}/r2"),
                Some(json!({"status": "New"})),
            )
            .await;
        assert_eq!(status, 200);

        stats_when(f.sim(), |s| s.delivered == 4).await;
        let base = &f.running.base_url;
        let seen: Vec<(String, String)> = receiver
            .events()
            .iter()
            .map(|e| {
                (
                    e["EventName"].as_str().unwrap().to_owned(),
                    e["ResourceUri"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            ("referral-created", "r2"),
            ("referral-updated", "r1"),
            ("referral-created", "r3"),
            ("referral-updated", "r2"),
        ]
        .iter()
        .map(|(name, id)| ((*name).to_owned(), format!("{base}{REFERRALS_PATH}/{id}")))
        .collect();
        assert_eq!(seen, expected);
        assert!(
            receiver
                .received()
                .iter()
                .all(|r| verifies(&public_key(), r))
        );
        assert_eq!(f.sim().webhook_stats().queued, 4);
    }

    #[tokio::test]
    async fn a_validation_event_needs_test_created_and_sends_a_test_event() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        let path = "/webhooks/v1/registration/validationEvents";
        let (status, _) = f.api(Method::POST, path, None).await;
        assert_eq!(status, 400);
        f.register(&receiver.url, &["referral-updated"]).await;
        let (status, answer) = f.api(Method::POST, path, None).await;
        assert_eq!(
            (status, inner_code(&answer)),
            (400, "WebhookEventNotRegistered")
        );

        f.register(&receiver.url, &["test-created"]).await;
        let (status, answer) = f.api(Method::POST, path, None).await;
        assert_eq!(status, 200, "{answer}");
        let correlation_id = answer["correlationId"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(correlation_id).is_ok());
        f.patch_r1("Active").await;

        stats_when(f.sim(), |s| s.delivered == 1).await;
        let events = receiver.events();
        assert_eq!(events.len(), 1, "only the test event is listed");
        assert_eq!(events[0]["EventName"], "test-created");
        assert_eq!(events[0]["ResourceName"], "test");
        assert_eq!(
            events[0]["ResourceUri"],
            format!("{}{path}/{correlation_id}", f.running.base_url)
        );
        assert!(verifies(&public_key(), &receiver.received()[0]));
    }

    #[tokio::test]
    async fn with_a_loss_rate_of_one_nothing_is_sent_and_every_event_is_counted_dropped() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        f.register(&receiver.url, &["referral-updated"]).await;
        let loss = json!({"webhook_loss_rate": 1.0});
        let (status, _) = f.call(Method::PUT, "/_sim/faults", Some(loss), false).await;
        assert_eq!(status, 204);
        assert_eq!(f.sim().faults().webhook_loss_rate, 1.0);
        for status in ["Active", "Closed", "New"] {
            f.patch_r1(status).await;
        }
        let stats = f.sim().webhook_stats();
        assert_eq!(
            stats,
            WebhookStats {
                dropped: 3,
                ..WebhookStats::default()
            }
        );
        assert!(receiver.received().is_empty());
    }

    /// Delivered and dropped of 200 changes at a loss rate of 0.3.
    async fn lossy_run() -> (u64, u64) {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        f.register(&receiver.url, &["referral-created"]).await;
        f.sim().set_faults(Faults {
            webhook_loss_rate: 0.3,
            ..Faults::default()
        });
        for n in 0..200 {
            f.sim()
                .upsert_referrals(vec![json!({"id": format!("n{n}")})]);
        }
        let stats = stats_when(f.sim(), |s| s.delivered + s.dropped == 200).await;
        assert_eq!((stats.failed, stats.queued), (0, stats.delivered));
        assert_eq!(receiver.received().len() as u64, stats.delivered);
        (stats.delivered, stats.dropped)
    }

    #[tokio::test]
    async fn with_a_loss_rate_some_events_are_dropped_reproducibly() {
        let (delivered, dropped) = lossy_run().await;
        assert!(0 < dropped && dropped < 200, "{dropped} dropped");
        assert_eq!(delivered + dropped, 200);
        assert_eq!(lossy_run().await, (delivered, dropped));
    }

    #[tokio::test]
    async fn a_receiver_failing_twice_gets_the_event_on_the_third_attempt() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[500, 503], 200).await;
        f.register(&receiver.url, &["referral-updated"]).await;
        f.patch_r1("Active").await;

        let stats = stats_when(f.sim(), |s| s.delivered == 1).await;
        assert_eq!((stats.attempts, stats.failed), (3, 0));
        let received = receiver.received();
        assert_eq!(received.len(), 3);
        assert!(received.iter().all(|r| r.body == received[0].body));
        assert!(verifies(&public_key(), &received[2]));
    }

    #[tokio::test]
    async fn a_receiver_always_failing_counts_the_event_failed_after_ten_attempts() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 500).await;
        f.register(&receiver.url, &["referral-updated"]).await;
        f.patch_r1("Active").await;

        let stats = stats_when(f.sim(), |s| s.failed == 1).await;
        assert_eq!(
            stats,
            WebhookStats {
                queued: 1,
                failed: 1,
                attempts: 10,
                ..WebhookStats::default()
            }
        );
        assert_eq!(receiver.received().len(), 10);
    }

    #[tokio::test]
    async fn an_unreachable_receiver_counts_the_event_failed() {
        let f = Fixture::start().await;
        let closed = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("{}/hook", closed.base_url);
        drop(closed);
        f.register(&url, &["referral-updated"]).await;
        f.patch_r1("Active").await;
        let stats = stats_when(f.sim(), |s| s.failed == 1).await;
        assert_eq!((stats.attempts, stats.delivered), (10, 0));
    }

    #[tokio::test]
    async fn an_unlisted_event_or_a_deleted_registration_sends_nothing() {
        let f = Fixture::start().await;
        let receiver = Receiver::start(&[], 200).await;
        f.register(&receiver.url, &["referral-created"]).await;
        f.patch_r1("Active").await;
        f.register(&receiver.url, &["referral-updated"]).await;
        let (status, _) = f.api(Method::DELETE, REGISTRATION_PATH, None).await;
        assert_eq!(status, 204);
        f.patch_r1("Closed").await;
        f.sim().upsert_referrals(vec![json!({"id": "r9"})]);

        assert_eq!(f.sim().webhook_stats(), WebhookStats::default());
        assert!(receiver.received().is_empty());
    }
}
