//! http-api on Lambda: builds the adapters once, then serves API Gateway (payload 2.0) requests.

use std::sync::Arc;

use http_api::{ApiState, WebhookIntake, api_token, router};
use hunter_core::{config::Config, credentials::Credentials, telemetry, wiring};
use hunter_domain::rules::Rules;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let sdk = wiring::aws_sdk_config().await;
    let credentials = Credentials::load(&sdk, config.secret_arn.as_deref()).await?;
    let push_queue = wiring::dynamics_queue(&sdk, &config).await?;
    let referrals_queue = wiring::referrals_queue(&sdk, &config).await?;
    let http = wiring::http_client()?;
    let tokens = wiring::refresh_token_store(&sdk, &config)?;
    let webhooks = WebhookIntake::new(
        Arc::new(wiring::webhook_verifier(&config)?),
        Arc::new(wiring::partner_center(http, &config, &credentials, tokens)?),
    );
    let rules = Rules::load(config.rules_file.as_deref().map(std::path::Path::new))?;
    let state = ApiState {
        store: Arc::new(wiring::dynamo_store(&sdk, &config)),
        referrals_queue: Arc::new(referrals_queue),
        push_queue: Arc::new(push_queue),
        sync: Arc::new(wiring::lambda_sync_trigger(&sdk, &config)),
        scanner: Arc::new(wiring::dns_scanner(&config)?),
        rules: Arc::new(rules),
        api_token: api_token(credentials.api_token)?,
        access_tokens: wiring::entra_token_verifier(&config)?,
        ui_origins: config.ui_origin.clone(),
        webhooks: Some(webhooks),
    };
    lambda_http::run(router(state)).await
}
