//! push-dynamics on Lambda: builds the adapters once, then serves SQS batches.

use aws_lambda_events::event::sqs::SqsEvent;
use hunter_core::dynamics::DynamicsMapping;
use hunter_core::{config::Config, credentials::Credentials, telemetry, wiring};
use lambda_runtime::{LambdaEvent, service_fn};
use push_dynamics::{PushDeps, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let mapping = DynamicsMapping::load(config.mapping_file.as_deref().map(std::path::Path::new))?;
    let sdk = wiring::aws_sdk_config().await;
    let credentials = Credentials::load(&sdk, config.secret_arn.as_deref()).await?;
    let store = wiring::dynamo_store(&sdk, &config);
    let queue = wiring::sqs_queue(
        &sdk,
        config.dynamics_queue_url.as_deref(),
        "HUNTER_DYNAMICS_QUEUE_URL",
    )
    .await?;
    let sink = wiring::dataverse_sink(wiring::http_client()?, &config, &credentials, &mapping)?;
    let deps = PushDeps {
        store: &store,
        sink: &sink,
        mapping: &mapping,
        queue: Some(&queue),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        handle(&deps, event)
    }))
    .await
}
