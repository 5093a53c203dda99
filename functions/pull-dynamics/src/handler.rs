//! pull-dynamics: on a schedule, pulls what sellers changed in Dynamics 365 back onto Hunter's
//! leads ([`hunter_core::crm_pull`]) and answers the pull's JSON summary. A failed pull is an
//! error (the schedule's next run starts from the same cursor).

use hunter_core::crm_pull::{PullDeps, PullSummary, pull_crm_changes};
use lambda_runtime::{Error, LambdaEvent};

/// One scheduled invocation.
pub async fn handle(
    deps: &PullDeps<'_>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<PullSummary, Error> {
    tracing::info!(
        event = "pull_dynamics_invoked",
        source = event.payload["source"].as_str(),
        request_id = %event.context.request_id
    );
    match pull_crm_changes(deps).await {
        Ok(summary) => Ok(summary),
        Err(err) => {
            tracing::error!(event = "pull_dynamics_failed", retryable = err.is_retryable(), error = %err);
            Err(err.into())
        }
    }
}
