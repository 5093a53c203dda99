//! push-dynamics on Lambda: builds the adapters once, then serves SQS batches.

use aws_lambda_events::event::sqs::SqsEvent;
use hunter_core::ports::ReferralWriteBack;
use hunter_core::{config::Config, credentials::Credentials, telemetry, wiring};
use hunter_domain::crm::DynamicsMapping;
use lambda_runtime::{LambdaEvent, service_fn};
use push_dynamics::{PushDeps, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let mapping = DynamicsMapping::load(config.mapping_file.as_deref().map(std::path::Path::new))?;
    let sdk = wiring::aws_sdk_config().await;
    let credentials = Credentials::load(&sdk, config.secret_arn.as_deref()).await?;
    let store = std::sync::Arc::new(wiring::dynamo_store(&sdk, &config));
    let queue = wiring::dynamics_queue(&sdk, &config).await?;
    let sink = wiring::dataverse_sink(wiring::http_client()?, &config, &credentials, &mapping)?;
    let partner_center = wiring::write_back(&sdk, &config, &credentials)?;
    let deps = PushDeps {
        store: store.as_ref(),
        sink: &sink,
        mapping: &mapping,
        queue: Some(&queue),
        max_receives: config.max_receive_count,
        write_back: partner_center.as_ref().map(|c| c as &dyn ReferralWriteBack),
        opportunities: config.d365_opportunities.unwrap_or(true),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        handle(&deps, event)
    }))
    .await
}
