//! ingest-referral on Lambda: builds the adapters once, then serves SQS batches.

use aws_lambda_events::event::sqs::SqsEvent;
use hunter_core::retry::Backoff;
use hunter_core::{config::Config, telemetry, wiring};
use hunter_domain::rules::Rules;
use ingest_referral::{DomainTurns, IngestDeps, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::Lambda);
    let config = Config::from_env()?;
    let rules = Rules::load(config.rules_file.as_deref().map(std::path::Path::new))?;
    let sdk = wiring::aws_sdk_config().await;
    let store = wiring::dynamo_store(&sdk, &config);
    let push_queue = wiring::dynamics_queue(&sdk, &config).await?;
    let referrals_queue = wiring::referrals_queue(&sdk, &config).await?;
    let scanner = wiring::dns_scanner(&config)?;
    let deps = IngestDeps {
        store: &store,
        push_queue: &push_queue,
        scanner: &scanner,
        rules: &rules,
        rescan_after: config.rescan_after,
        send_backoff: Backoff::default(),
        max_receives: config.max_receive_count,
        referrals_queue: Some(&referrals_queue),
        turns: &DomainTurns::default(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        handle(&deps, event)
    }))
    .await
}
