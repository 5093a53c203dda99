//! The SQS queue: a queue URL and the dead-letter queue named in its RedrivePolicy.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use crate::ports::QueueError;
use crate::ports::{OutgoingMessage, Queue, QueueDepth, ReceivedMessage, SendFailure};

/// [`Queue`] on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dlq_url: Option<String>,
}

/// Maps an SDK failure to a typed queue error: malformed requests are not retryable.
fn queue_error<E, R>(err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(&err).to_string();
    let invalid = err.code().is_some_and(|code| {
        code.contains("TooManyEntries")
            || code.contains("BatchRequestTooLong")
            || code.contains("BatchEntryIdsNotDistinct")
            || code.contains("EmptyBatchRequest")
            || code.contains("InvalidBatchEntryId")
            || code.contains("ReceiptHandleIsInvalid")
            || code.contains("InvalidParameterValue")
            || code.contains("MessageNotInflight")
            || code.contains("NonExistentQueue")
    });
    if invalid {
        QueueError::Invalid(text)
    } else {
        QueueError::Unavailable(text)
    }
}

/// The URL of the queue `arn` names, in the account and region of the queue at `url`.
fn sibling_queue_url(url: &str, arn: &str) -> Option<String> {
    let name = arn.rsplit(':').next().filter(|n| !n.is_empty())?;
    let (base, _) = url.trim_end_matches('/').rsplit_once('/')?;
    Some(format!("{base}/{name}"))
}

/// Receive calls one look at a dead-letter queue makes at most.
const PEEK_ROUNDS: usize = 50;

fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).unwrap_or(i32::MAX)
}

impl SqsQueue {
    /// The queue at `url`, its dead-letter queue read from its RedrivePolicy (one
    /// `GetQueueAttributes` call: a DLQ lives in the queue's account and region, so its URL is the
    /// queue's with the DLQ's name).
    pub async fn from_url(client: Client, url: impl Into<String>) -> Result<Self, QueueError> {
        let url = url.into();
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(queue_error)?;
        let dlq_url = attributes
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
            .and_then(|policy| serde_json::from_str::<serde_json::Value>(&policy).ok())
            .and_then(|policy| policy["deadLetterTargetArn"].as_str().map(str::to_owned))
            .and_then(|arn| sibling_queue_url(&url, &arn));
        Ok(Self {
            client,
            url,
            dlq_url,
        })
    }

    /// Creates (if missing) `name` and its dead-letter queue `<name>-dlq`, linked by a
    /// RedrivePolicy with `max_receive_count`; a queue that exists is used as it is.
    pub async fn ensure(
        client: Client,
        name: &str,
        visibility: Duration,
        max_receive_count: u32,
    ) -> Result<Self, QueueError> {
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(queue_error)?
            .queue_url
            .ok_or_else(|| QueueError::Unavailable("CreateQueue returned no URL".to_owned()))?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(queue_error)?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| QueueError::Unavailable("dead-letter queue has no ARN".to_owned()))?;
        let policy = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()});
        let created = client
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                whole_seconds(visibility).to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .send()
            .await;
        let url = match created {
            Ok(answer) => answer.queue_url,
            // It exists with other attributes (another visibility timeout): it is used as it is.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_name_exists()) =>
            {
                tracing::info!(
                    event = "sqs_queue_kept",
                    queue = name,
                    reason = "exists with other attributes"
                );
                client
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(queue_error)?
                    .queue_url
            }
            Err(err) => return Err(queue_error(err)),
        }
        .ok_or_else(|| QueueError::Unavailable("CreateQueue returned no URL".to_owned()))?;
        Ok(Self {
            client,
            url,
            dlq_url: Some(dlq_url),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .set_visibility_timeout(visibility.map(whole_seconds))
            .wait_time_seconds(whole_seconds(wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| ReceivedMessage {
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn visible_count(&self, url: &str) -> Result<(u64, u64), QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(queue_error)?
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    fn dlq(&self) -> Result<&str, QueueError> {
        self.dlq_url
            .as_deref()
            .ok_or_else(|| QueueError::Invalid(format!("{} has no dead-letter queue", self.url)))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<SendFailure>, QueueError> {
        let entries = messages
            .iter()
            .map(|m| {
                SendMessageBatchRequestEntry::builder()
                    .id(&m.id)
                    .message_body(&m.body)
                    .set_delay_seconds(m.delay.map(whole_seconds))
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(output
            .failed
            .into_iter()
            .map(|f| SendFailure {
                id: f.id,
                code: f.code,
                message: f.message.unwrap_or_default(),
                sender_fault: f.sender_fault,
            })
            .collect())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_from(&self.url, max, visibility, wait).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(timeout))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let (visible, in_flight) = self.visible_count(&self.url).await?;
        let dead_letters = match &self.dlq_url {
            Some(dlq) => {
                let (visible, in_flight) = self.visible_count(dlq).await?;
                visible + in_flight
            }
            None => 0,
        };
        Ok(QueueDepth {
            visible,
            in_flight,
            dead_letters,
        })
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        // Received with no visibility timeout, so they stay visible; SQS samples its servers, so
        // a few rounds are merged by message id until one brings nothing new.
        let dlq = self.dlq()?;
        let mut seen: Vec<ReceivedMessage> = Vec::new();
        for _ in 0..PEEK_ROUNDS {
            let batch = self
                .receive_from(dlq, 10, Some(Duration::ZERO), Duration::ZERO)
                .await?;
            let before = seen.len();
            for mut message in batch {
                if seen.len() < max && !seen.iter().any(|m| m.message_id == message.message_id) {
                    message.receipt.clear();
                    seen.push(message);
                }
            }
            if seen.len() == before || seen.len() >= max {
                break;
            }
        }
        Ok(seen)
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let dlq = self.dlq()?;
        let mut taken = Vec::new();
        while taken.len() < max {
            let batch = self
                .receive_from(
                    dlq,
                    max - taken.len(),
                    Some(Duration::from_secs(30)),
                    Duration::ZERO,
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            for message in &batch {
                self.client
                    .delete_message()
                    .queue_url(dlq)
                    .receipt_handle(&message.receipt)
                    .send()
                    .await
                    .map_err(queue_error)?;
            }
            taken.extend(batch);
        }
        Ok(taken)
    }

    async fn redrive_dead_letters(&self) -> Result<usize, QueueError> {
        let dlq = self.dlq()?.to_owned();
        let mut moved = 0;
        loop {
            let batch = self
                .receive_from(&dlq, 10, Some(Duration::from_secs(30)), Duration::ZERO)
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            let outgoing: Vec<OutgoingMessage> = batch
                .iter()
                .enumerate()
                .map(|(i, m)| OutgoingMessage::new(i.to_string(), m.body.clone()))
                .collect();
            let failed = self.send_batch(&outgoing).await?;
            for (i, message) in batch.iter().enumerate() {
                if failed.iter().any(|f| f.id == i.to_string()) {
                    continue;
                }
                self.client
                    .delete_message()
                    .queue_url(&dlq)
                    .receipt_handle(&message.receipt)
                    .send()
                    .await
                    .map_err(queue_error)?;
                moved += 1;
            }
            if !failed.is_empty() {
                return Err(QueueError::Unavailable(format!(
                    "{} dead letters could not be moved back",
                    failed.len()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sibling_queue_url;

    #[test]
    fn when_a_redrive_policy_names_a_dlq_should_address_it_beside_the_queue() {
        assert_eq!(
            sibling_queue_url(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/hunter-referrals",
                "arn:aws:sqs:eu-west-1:123456789012:hunter-referrals-dlq"
            )
            .as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/hunter-referrals-dlq")
        );
        assert_eq!(
            sibling_queue_url(
                "http://127.0.0.1:5000/123456789012/q/",
                "arn:aws:sqs:us-east-1:123456789012:q-dlq"
            )
            .as_deref(),
            Some("http://127.0.0.1:5000/123456789012/q-dlq")
        );
        assert_eq!(sibling_queue_url("no-slashes", "arn:aws:sqs:r:1:q"), None);
        assert_eq!(sibling_queue_url("http://h/1/q", "arn:aws:sqs:r:1:"), None);
    }
}
