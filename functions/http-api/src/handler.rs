//! The `/api/v1` HTTP API: health, referrals, leads, scans and counts, sync runs, starting a
//! sync, Dynamics pushes, and its OpenAPI document. The same router serves API Gateway (payload
//! 2.0) on Lambda and hunter-local's listener.

mod auth;
mod dynamics;
mod error;
mod extract;
mod leads;
mod referrals;
mod status;
mod sync;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware;
use hunter_core::ports::{AccessTokenVerifier, DomainScanner, Queue, Store, SyncTrigger};
use hunter_core::secret::Secret;
use hunter_domain::model::Lead;
use hunter_domain::rules::{Rules, normalize_domain};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{MissingApiToken, api_token};
pub use error::{ApiError, not_found};
pub use webhooks::WebhookIntake;

/// What the routes share.
#[allow(missing_debug_implementations, reason = "trait objects")]
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// The referrals queue (its depth is in `/health`).
    pub referrals_queue: Arc<dyn Queue>,
    /// The dynamics-push queue.
    pub push_queue: Arc<dyn Queue>,
    /// Starts `POST /sync` runs.
    pub sync: Arc<dyn SyncTrigger>,
    /// Scans domains for `POST /scan` and rescans.
    pub scanner: Arc<dyn DomainScanner>,
    /// The rules scans are scored by.
    pub rules: Arc<Rules>,
    /// The bearer token every route but `/health` accepts; never empty (see [`api_token`]).
    pub api_token: Secret,
    /// Checks the access tokens of people signed in with Entra ID, accepted beside the API
    /// token when set.
    pub access_tokens: Option<Arc<dyn AccessTokenVerifier>>,
    /// Origins of a UI served elsewhere that browsers may call the API from (CORS); empty: the
    /// UI's own origin only.
    pub ui_origins: Vec<String>,
    /// Partner Center webhook events are taken when set (else their route answers 404).
    pub webhooks: Option<WebhookIntake>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hunter API",
        description = "Partner Center referrals as scored company leads, their Dynamics 365 \
            sync, and the sync history. Every route but /health needs `Authorization: Bearer` \
            with the API token or an Entra ID access token; every error is \
            `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(leads::LeadOrder)),
    security(("bearer" = [])),
    tags(
        (name = "leads", description = "Companies, their scores and counts"),
        (name = "referrals", description = "Partner Center referrals as received"),
        (name = "sync", description = "Partner Center syncs"),
        (name = "dynamics", description = "Pushes to Dynamics 365"),
        (name = "webhooks", description = "Partner Center webhook events"),
        (name = "status", description = "Liveness and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API token, or an Entra ID access token"))
                    .build(),
            ),
        );
    }
}

/// The routes: `/health` open, the rest behind the bearer token. Without the auth layer, so
/// that [`openapi`] can describe them without an [`ApiState`].
fn api() -> (OpenApiRouter<ApiState>, OpenApiRouter<ApiState>) {
    // Nothing open takes a body larger than an event: refused before it is read whole.
    let open = OpenApiRouter::new()
        .routes(routes!(status::health))
        .routes(routes!(webhooks::partner_center_event))
        .layer(DefaultBodyLimit::max(webhooks::MAX_EVENT_BYTES));
    let protected = OpenApiRouter::new()
        .routes(routes!(status::openapi_json))
        .routes(routes!(referrals::list_referrals))
        .routes(routes!(referrals::get_referral))
        .routes(routes!(leads::stats))
        .routes(routes!(leads::list_leads))
        .routes(routes!(leads::export::export_csv))
        .routes(routes!(leads::get_lead))
        .routes(routes!(leads::rescan_lead))
        .routes(routes!(leads::scan_domain))
        .routes(routes!(sync::list_sync_runs))
        .routes(routes!(sync::start_sync))
        .routes(routes!(dynamics::push_one))
        .routes(routes!(dynamics::push_all))
        .routes(routes!(dynamics::push_status))
        .routes(routes!(webhooks::webhooks));
    (open, protected)
}

/// The OpenAPI document of every route (`GET /api/v1/openapi.json` serves it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (open, protected) = api();
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", open.merge(protected))
        .into_openapi()
}

/// The API as Lambda serves it: [`routes()`], and the JSON 404 for every other path.
pub fn router(state: ApiState) -> Router {
    routes(state).fallback(unknown_route)
}

/// The routes under `/api/v1`; all but `/health` need `Authorization: Bearer <token>`. Without a
/// fallback, so that hunter-local can serve the UI beside them.
pub fn routes(state: ApiState) -> Router {
    let (open, protected) = api();
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let (api, _) = OpenApiRouter::new()
        .merge(open.merge(protected))
        .split_for_parts();
    let api = api
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Answers are per caller and change: no browser or CDN keeps them.
    let router = Router::new()
        .nest("/api/v1", api)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    match cors(&state.ui_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS for a UI served from other origins: exactly those, with the bearer header; none else.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    (!origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::CONTENT_DISPOSITION, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600))
    })
}

async fn unknown_route() -> ApiError {
    not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The `{domain}` of a lead's routes.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct LeadDomain {
    /// The lead's domain (a registrable domain, any case).
    #[param(
        example = "contoso.com",
        pattern = r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"
    )]
    domain: String,
}

/// The lead of `domain` (normalized), or a 400 for a domain that is not one, or a 404.
pub(crate) async fn lead_of(state: &ApiState, domain: &str) -> Result<Lead, ApiError> {
    let domain = normalize_domain(domain)
        .map_err(|e| ApiError::bad_request(format!("domain {domain:?}: {e}")))?;
    state
        .store
        .get_lead(&domain)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no lead for {domain}")))
}
