//! pull-dynamics on Lambda: builds the adapters once, then serves scheduled invocations.

use std::sync::Arc;

use hunter_core::crm_pull::PullDeps;
use hunter_core::dynamics::DataverseChangeReader;
use hunter_core::ports::ReferralWriteBack;
use hunter_core::{config::Config, credentials::Credentials, telemetry, wiring};
use hunter_domain::crm::DynamicsMapping;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let mapping = DynamicsMapping::load(config.mapping_file.as_deref().map(std::path::Path::new))?;
    let sdk = wiring::aws_sdk_config().await;
    let credentials = Credentials::load(&sdk, config.secret_arn.as_deref()).await?;
    let store = Arc::new(wiring::dynamo_store(&sdk, &config));
    let client = wiring::dataverse_client(wiring::http_client()?, &config, &credentials)?;
    let source = DataverseChangeReader::new(Arc::new(client), &mapping);
    let mirror = wiring::outcome_mirror(&sdk, &config, &credentials)?;
    let deps = PullDeps {
        store: store.as_ref(),
        source: &source,
        mirror: mirror.as_ref().map(|c| c as &dyn ReferralWriteBack),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        pull_dynamics::handle(&deps, event)
    }))
    .await
}
