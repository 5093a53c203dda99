//! fetch-referrals on Lambda: builds the adapters once, then serves scheduled invocations.

use std::sync::Arc;

use fetch_referrals::{FetchDeps, handle, settings_from};
use hunter_core::{config::Config, credentials::Credentials, telemetry, wiring};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let sdk = wiring::aws_sdk_config().await;
    let credentials = Credentials::load(&sdk, config.secret_arn.as_deref()).await?;
    let store = Arc::new(wiring::dynamo_store(&sdk, &config));
    let queue = wiring::referrals_queue(&sdk, &config).await?;
    let tokens = wiring::refresh_token_store(&sdk, &config)?;
    let source = wiring::partner_center(wiring::http_client()?, &config, &credentials, tokens)?;
    let settings = settings_from(&config);
    let deps = FetchDeps {
        store: store.as_ref(),
        queue: &queue,
        source: &source,
        settings: &settings,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        handle(&deps, event)
    }))
    .await
}
