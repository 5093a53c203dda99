//! The sync trigger on AWS: an asynchronous invocation of the fetch-referrals function.

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use crate::ports::SyncTrigger;
use crate::ports::TriggerError;

/// [`SyncTrigger`] that invokes fetch-referrals (`InvocationType: Event`) with `{"runId": ...}`
/// (or `{}` to continue the run in progress).
#[derive(Debug, Clone)]
pub struct LambdaSyncTrigger {
    client: Client,
    function: String,
}

impl LambdaSyncTrigger {
    /// Invokes `function` (a name or ARN).
    pub fn new(client: Client, function: impl Into<String>) -> Self {
        Self {
            client,
            function: function.into(),
        }
    }
}

/// Error codes no retry will change: a wrong function name, policy or payload.
const PERMANENT_CODES: [&str; 7] = [
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidParameterValueException",
    "InvalidRequestContentException",
    "RequestTooLargeException",
];

#[async_trait]
impl SyncTrigger for LambdaSyncTrigger {
    async fn request_sync(&self, run_id: Option<&str>) -> Result<(), TriggerError> {
        let payload = match run_id {
            Some(id) => serde_json::json!({ "runId": id }),
            None => serde_json::json!({}),
        }
        .to_string();
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|err| {
                let text = DisplayErrorContext(&err).to_string();
                if err
                    .code()
                    .is_some_and(|code| PERMANENT_CODES.contains(&code))
                {
                    TriggerError::Invalid(text)
                } else {
                    TriggerError::Unavailable(text)
                }
            })?;
        tracing::info!(event = "sync_requested", run_id = run_id.unwrap_or("(in progress)"), function = %self.function);
        Ok(())
    }
}
