//! Hunter's Partner Center webhook registration: `hunter-local webhooks register --url URL |
//! list | delete` against Partner Center's webhook API, and the registration hunter-local makes
//! with its built-in simulator when it serves.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use hunter_core::config::Config;
use hunter_core::credentials::Credentials;
use hunter_core::partner_center::webhook::REFERRAL_EVENTS;
use hunter_core::partner_center::{
    RefreshTokenStore, WEBHOOKS_SCOPE, WebhookRegistration, WebhookRegistrations,
};
use hunter_core::ports::Store;
use hunter_core::retry::Backoff;
use hunter_core::webhook_activity::set_registration;
use hunter_core::wiring;
use hunter_domain::clock;
use hunter_domain::model::WebhookRegistrationState;

use crate::cli::{Args, WebhookAction};

/// Partner Center's webhook API (another host than the Referrals API).
pub const PARTNER_CENTER_WEBHOOKS_URL: &str = "https://api.partnercenter.microsoft.com";

/// The route of hunter-local's API that takes the events.
pub const WEBHOOK_ROUTE: &str = "api/v1/webhooks/partner-center";

/// The webhook registration API at `base_url`, with the Partner Center credentials and refresh
/// token of `tokens`.
pub fn registrations(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
    tokens: Arc<dyn RefreshTokenStore>,
    base_url: &str,
) -> anyhow::Result<WebhookRegistrations> {
    let auth = wiring::partner_center_auth(http.clone(), config, credentials, tokens)
        .with_scope(WEBHOOKS_SCOPE);
    Ok(WebhookRegistrations::new(
        http,
        base_url,
        auth,
        Backoff::default(),
    )?)
}

/// Registers `url` for the referral events and records the registration in `store`.
pub async fn register(
    api: &WebhookRegistrations,
    store: &dyn Store,
    url: &str,
) -> anyhow::Result<WebhookRegistration> {
    let registration = api
        .register(url, &REFERRAL_EVENTS)
        .await
        .context("registering the webhook with Partner Center")?;
    set_registration(
        store,
        Some(WebhookRegistrationState {
            url: registration.webhook_url.clone(),
            events: registration.webhook_events.clone(),
            registered_at: clock::now(),
        }),
    )
    .await?;
    tracing::info!(
        event = "webhook_registered",
        url = registration.webhook_url,
        events = ?registration.webhook_events
    );
    Ok(registration)
}

/// `hunter-local webhooks --api-url URL …` (Partner Center's webhook API by default), with the
/// refresh token `hunter-local sign-in` kept; the registration is recorded in the backend the
/// flags name (`--aws` for a deployment's UI to show it).
pub async fn command(
    args: &Args,
    base_url: &str,
    action: &WebhookAction,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env().context("reading HUNTER_* configuration")?;
    if let Some(token_url) = &args.partner_center_token_url {
        config.partner_center_token_url.clone_from(token_url);
    }
    let credentials = Credentials::from_vars(std::env::vars());
    let tokens = crate::refresh_token::token_store(&args.backend, &config).await?;
    let api = registrations(
        wiring::http_client()?,
        &config,
        &credentials,
        tokens.store,
        base_url,
    )?;
    let store = crate::backend(args).await?.store;
    match action {
        WebhookAction::Register { url } => {
            let registration = register(&api, store.as_ref(), url).await?;
            println!(
                "registered {} for {}",
                registration.webhook_url,
                registration.webhook_events.join(", ")
            );
        }
        WebhookAction::List => match api.get().await? {
            Some(registration) => println!(
                "{}\t{}",
                registration.webhook_url,
                registration.webhook_events.join(",")
            ),
            None => println!("no webhook is registered"),
        },
        WebhookAction::Delete => {
            let deleted = api.delete().await?;
            set_registration(store.as_ref(), None).await?;
            tracing::info!(event = "webhook_deleted", existed = deleted);
            println!(
                "{}",
                if deleted {
                    "deleted the webhook registration"
                } else {
                    "no webhook was registered"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
