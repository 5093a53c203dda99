//! pull-dynamics: on a schedule, pulls what sellers changed in Dynamics 365 back onto Hunter's
//! leads ([`hunter_core::crm_pull`]) and answers the pull's JSON summary, with its metrics line.
//! A failed pull is an error (the schedule's next run starts from the same cursor).

use hunter_core::crm_pull::{PullDeps, PullSummary, pull_crm_changes};
use hunter_core::metrics::{Metrics, MetricsSink, pull_dynamics as metric};
use lambda_runtime::{Error, LambdaEvent};

/// One scheduled invocation.
pub async fn handle(
    deps: &PullDeps<'_>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<PullSummary, Error> {
    handle_with_metrics(deps, event, &MetricsSink::from_env()).await
}

/// [`handle`], its metrics line written to `metrics`.
pub async fn handle_with_metrics(
    deps: &PullDeps<'_>,
    event: LambdaEvent<serde_json::Value>,
    metrics: &MetricsSink,
) -> Result<PullSummary, Error> {
    tracing::info!(
        event = "pull_dynamics_invoked",
        source = event.payload["source"].as_str(),
        request_id = %event.context.request_id
    );
    match pull_crm_changes(deps).await {
        Ok(summary) => {
            metrics.emit(&pull_metrics(Some(&summary)));
            Ok(summary)
        }
        Err(err) => {
            metrics.emit(&pull_metrics(None));
            tracing::error!(event = "pull_dynamics_failed", retryable = err.is_retryable(), error = %err);
            Err(err.into())
        }
    }
}

/// The metrics line of a pull (`None`: it failed).
pub fn pull_metrics(summary: Option<&PullSummary>) -> Metrics {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Metrics::new(metric::FUNCTION)
        .count(
            metric::LEADS_UPDATED,
            summary.map_or(0, |s| count(s.leads_updated)),
        )
        .count(metric::MIRRORED, summary.map_or(0, |s| count(s.mirrored)))
        .count(
            metric::MIRROR_FAILED,
            summary.map_or(0, |s| count(s.mirror_failed)),
        )
        .count(metric::PULLS_FAILED, u64::from(summary.is_none()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_a_pull_ends_its_metrics_should_count_it() {
        let summary = PullSummary {
            leads_updated: 3,
            mirrored: 2,
            mirror_failed: 1,
            ..PullSummary::default()
        };
        let line = pull_metrics(Some(&summary)).to_json(0);
        assert_eq!(
            (
                &line["CrmLeadsUpdated"],
                &line["OutcomesMirrored"],
                &line["OutcomeMirrorsFailed"],
                &line["CrmPullsFailed"]
            ),
            (&3.into(), &2.into(), &1.into(), &0.into())
        );
        assert_eq!(pull_metrics(None).to_json(0)["CrmPullsFailed"], 1);
    }
}
