//! What Partner Center's webhooks did, kept in the sync state (`GET /api/v1/webhooks`, the UI).

use hunter_domain::clock;
use hunter_domain::model::{WebhookActivity, WebhookRegistrationState};

use crate::optimistic::{Change, update_state};
use crate::ports::{StoreError, SyncStore};

/// The sync-state key of [`WebhookActivity`].
pub const WEBHOOK_STATE_KEY: &str = "webhooks";

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Signed; its referral was fetched and queued for ingest.
    Queued,
    /// Signed; nothing to queue (a test event, another kind of event, a referral gone).
    Received,
    /// Refused, and why.
    Refused(String),
}

/// The activity so far (all zero before the first event).
pub async fn webhook_activity<S: SyncStore + ?Sized>(
    store: &S,
) -> Result<WebhookActivity, StoreError> {
    Ok(match store.get_state(WEBHOOK_STATE_KEY).await? {
        Some(state) => serde_json::from_value(state.value).unwrap_or_default(),
        None => WebhookActivity::default(),
    })
}

/// Counts one event. Never fails the event: a count that cannot be written is logged.
pub async fn count_event<S: SyncStore + ?Sized>(store: &S, outcome: &EventOutcome) {
    let now = clock::now();
    let counted = change(store, |activity| match outcome {
        EventOutcome::Queued | EventOutcome::Received => {
            activity.received += 1;
            activity.queued += u64::from(*outcome == EventOutcome::Queued);
            activity.last_event_at = Some(now);
        }
        EventOutcome::Refused(why) => {
            activity.refused += 1;
            activity.last_refused_at = Some(now);
            activity.last_refusal = Some(why.clone());
        }
    })
    .await;
    if let Err(err) = counted {
        tracing::warn!(event = "webhook_event_count_failed", error = %err);
    }
}

/// Records the registration Hunter made (`None`: deleted).
pub async fn set_registration<S: SyncStore + ?Sized>(
    store: &S,
    registration: Option<WebhookRegistrationState>,
) -> Result<(), StoreError> {
    change(store, |activity| {
        activity.registration = registration.clone();
    })
    .await
}

async fn change<S: SyncStore + ?Sized>(
    store: &S,
    mut apply: impl FnMut(&mut WebhookActivity) + Send,
) -> Result<(), StoreError> {
    update_state(store, WEBHOOK_STATE_KEY, |stored| {
        let mut activity: WebhookActivity = stored
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        apply(&mut activity);
        Change::Write(serde_json::to_value(&activity).unwrap_or_default(), ())
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::EmbeddedStore;

    #[tokio::test]
    async fn when_events_come_should_count_them_by_outcome_and_keep_the_registration() {
        let store = EmbeddedStore::new();
        assert_eq!(
            webhook_activity(&store).await.unwrap(),
            WebhookActivity::default()
        );
        let registration = WebhookRegistrationState {
            url: "https://hunter.example/api/v1/webhooks/partner-center".into(),
            events: vec!["referral-created".into()],
            registered_at: clock::now(),
        };
        set_registration(&store, Some(registration.clone()))
            .await
            .unwrap();
        for outcome in [
            EventOutcome::Queued,
            EventOutcome::Queued,
            EventOutcome::Received,
            EventOutcome::Refused("the signature does not match the body".into()),
        ] {
            count_event(&store, &outcome).await;
        }
        let activity = webhook_activity(&store).await.unwrap();
        assert_eq!(
            (activity.received, activity.queued, activity.refused),
            (3, 2, 1)
        );
        assert_eq!(activity.registration, Some(registration));
        assert_eq!(
            activity.last_refusal.as_deref(),
            Some("the signature does not match the body")
        );
        assert!(activity.last_event_at.is_some() && activity.last_refused_at.is_some());
        set_registration(&store, None).await.unwrap();
        let activity = webhook_activity(&store).await.unwrap();
        assert_eq!(activity.registration, None);
        assert_eq!(
            activity.received, 3,
            "deleting the registration keeps the counts"
        );
    }
}
