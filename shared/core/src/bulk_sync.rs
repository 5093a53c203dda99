//! Pushing every lead not synced, a page at a time: each step queues the pushes of one page of
//! leads and, when more follow, a message that continues with the next page, so no request or
//! invocation ever loads every lead.

use serde::{Deserialize, Serialize};

use crate::fanout::{SendAllError, send_all};
use crate::messages::PushMessage;
use crate::ports::{LeadQuery, LeadStore, MAX_PAGE_SIZE, OutgoingMessage, Queue, StoreError};
use crate::retry::Backoff;
use hunter_domain::model::{Lead, SyncStatus};

/// The statuses a bulk sync pushes, in order.
pub const STATUSES: [SyncStatus; 2] = [SyncStatus::Pending, SyncStatus::Failed];

/// Where a bulk sync goes on: the leads in `status` after `cursor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSyncStep {
    pub status: SyncStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl BulkSyncStep {
    /// The first step of a bulk sync.
    pub fn start() -> Self {
        Self {
            status: STATUSES[0],
            cursor: None,
        }
    }
}

/// A bulk-sync step on the dynamics-push queue (beside the [`PushMessage`]s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkSyncMessage {
    pub bulk_sync: BulkSyncStep,
}

impl BulkSyncMessage {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The step in `body`, if it is a bulk-sync message.
    pub fn from_body(body: &str) -> Option<BulkSyncStep> {
        serde_json::from_str::<Self>(body).ok().map(|m| m.bulk_sync)
    }
}

/// What one step queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepQueued {
    pub pushes: usize,
    /// A message continuing with the next page was queued.
    pub continues: bool,
}

/// A step that did not queue everything it should have.
#[derive(Debug, thiserror::Error)]
pub enum BulkSyncError {
    #[error("reading leads: {0}")]
    Store(#[from] StoreError),
    #[error("queuing pushes: {0}")]
    Queue(#[from] SendAllError),
    #[error("the queue refused {0} messages")]
    Refused(usize),
}

impl BulkSyncError {
    /// Whether the same step may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(err) => err.is_retryable(),
            Self::Queue(err) => err.is_retryable(),
            Self::Refused(_) => true,
        }
    }
}

/// The push messages of `leads` (`force`: even of a version Dynamics has), ids by position.
pub fn push_messages(leads: &[Lead], force: bool) -> Vec<OutgoingMessage> {
    leads
        .iter()
        .enumerate()
        .map(|(i, lead)| {
            let body = PushMessage {
                domain: lead.domain.to_string(),
                lead_version: lead.content_version,
                force,
                deferrals: 0,
            }
            .to_body();
            OutgoingMessage::new(i.to_string(), body)
        })
        .collect()
}

/// Queues forced pushes of one page of leads in `step.status`, then the step after it (the next
/// page, else the next status) when there is one.
pub async fn queue_step(
    store: &dyn LeadStore,
    queue: &dyn Queue,
    step: &BulkSyncStep,
) -> Result<StepQueued, BulkSyncError> {
    let page = store
        .list_leads(&LeadQuery {
            sync_status: Some(step.status),
            limit: Some(MAX_PAGE_SIZE),
            cursor: step.cursor.clone(),
            ..LeadQuery::default()
        })
        .await?;
    let mut messages = push_messages(&page.items, true);
    let next = match page.next_cursor {
        Some(cursor) => Some(BulkSyncStep {
            status: step.status,
            cursor: Some(cursor),
        }),
        None => STATUSES
            .iter()
            .skip_while(|s| **s != step.status)
            .nth(1)
            .map(|status| BulkSyncStep {
                status: *status,
                cursor: None,
            }),
    };
    if let Some(next) = &next {
        messages.push(OutgoingMessage::new(
            "next",
            BulkSyncMessage {
                bulk_sync: next.clone(),
            }
            .to_body(),
        ));
    }
    if messages.is_empty() {
        return Ok(StepQueued {
            pushes: 0,
            continues: false,
        });
    }
    let report = send_all(queue, &messages, &Backoff::default()).await?;
    if !report.failed.is_empty() {
        return Err(BulkSyncError::Refused(report.failed.len()));
    }
    Ok(StepQueued {
        pushes: page.items.len(),
        continues: next.is_some(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::adapters::{EmbeddedQueue, EmbeddedStore};
    use hunter_domain::rules::normalize_domain;

    fn lead(n: usize, status: SyncStatus) -> Lead {
        let mut lead = Lead::new(
            normalize_domain(&format!("company{n}.com")).unwrap(),
            hunter_domain::clock::now(),
        );
        lead.sync_status = status;
        lead
    }

    #[tokio::test]
    async fn when_many_leads_wait_should_queue_them_a_page_per_step_until_none_is_left() {
        let store = EmbeddedStore::new();
        for n in 0..450 {
            let status = if n % 3 == 0 {
                SyncStatus::Failed
            } else {
                SyncStatus::Pending
            };
            store.put_lead(&lead(n, status), None, None).await.unwrap();
        }
        store
            .put_lead(&lead(999, SyncStatus::Synced), None, None)
            .await
            .unwrap();
        let queue = EmbeddedQueue::new("push", Duration::from_secs(60), 5);

        let mut step = Some(BulkSyncStep::start());
        let mut pushed = std::collections::BTreeSet::new();
        let mut steps = 0;
        while let Some(current) = step.take() {
            let queued = queue_step(&store, &queue, &current).await.unwrap();
            assert!(queued.pushes <= MAX_PAGE_SIZE);
            steps += 1;
            loop {
                let received = queue.receive(10, None, Duration::ZERO).await.unwrap();
                if received.is_empty() {
                    break;
                }
                for m in received {
                    match BulkSyncMessage::from_body(&m.body) {
                        Some(next) => step = Some(next),
                        None => {
                            let push = PushMessage::from_body(&m.body).unwrap();
                            assert!(push.force);
                            assert!(pushed.insert(push.domain), "each lead once");
                        }
                    }
                    queue.delete(&m.receipt).await.unwrap();
                }
            }
        }
        assert_eq!(
            pushed.len(),
            450,
            "every lead not synced, and no synced one"
        );
        assert!(steps >= 3, "{steps} steps: pages, not all at once");
    }

    #[test]
    fn when_a_push_message_is_read_as_a_bulk_sync_step_should_not_be_one() {
        let push = PushMessage {
            domain: "contoso.com".into(),
            lead_version: 1,
            force: false,
            deferrals: 0,
        };
        assert_eq!(BulkSyncMessage::from_body(&push.to_body()), None);
        let step = BulkSyncStep::start();
        let body = BulkSyncMessage {
            bulk_sync: step.clone(),
        }
        .to_body();
        assert_eq!(BulkSyncMessage::from_body(&body), Some(step));
    }
}
