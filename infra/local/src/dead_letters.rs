//! `hunter-local dlq` and `hunter-local redrive`: what ended in a dead-letter queue and why, and
//! moving it back, on whichever backend the flags name.

use std::io::Write;

use hunter_core::messages::{PushMessage, ReferralMessage};
use hunter_core::ports::{Queue, ReceivedMessage, Store};
use serde::Serialize;

use crate::cli::QueueName;

/// Most dead letters one listing shows per queue.
const LIST_MAX: usize = 1000;
/// The longest error shown per dead letter.
const ERROR_CHARS: usize = 200;

/// One dead letter, as `hunter-local dlq` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterLine {
    pub queue: &'static str,
    pub message_id: String,
    pub receive_count: u32,
    /// Why its last receive failed (when the handler could record it).
    pub last_error: Option<String>,
    pub failed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What the message was about: `referral <id>` or `lead <domain>`.
    pub about: String,
}

/// The dead letters of `queue`, each with its recorded last failure.
pub async fn list(
    store: &dyn Store,
    queue: &dyn Queue,
    name: QueueName,
) -> anyhow::Result<Vec<DeadLetterLine>> {
    let mut lines = Vec::new();
    for message in queue.peek_dead_letters(LIST_MAX).await? {
        let failure = store
            .get_failure(name.as_str(), &message.message_id)
            .await?;
        lines.push(DeadLetterLine {
            queue: name.as_str(),
            about: about(name, &message),
            message_id: message.message_id,
            receive_count: failure.as_ref().map_or(message.receive_count, |f| {
                f.receive_count.max(message.receive_count)
            }),
            last_error: failure
                .as_ref()
                .map(|f| f.error.chars().take(ERROR_CHARS).collect()),
            failed_at: failure.map(|f| f.at),
        });
    }
    Ok(lines)
}

/// What a message was about, from its body.
fn about(name: QueueName, message: &ReceivedMessage) -> String {
    match name {
        QueueName::Referrals => match ReferralMessage::from_body(&message.body) {
            Ok(m) => match m.referral.get("id").and_then(|id| id.as_str()) {
                Some(id) => format!("referral {id}"),
                None => "a referral without an id".to_owned(),
            },
            Err(err) => format!("unreadable message ({err})"),
        },
        QueueName::DynamicsPush => match PushMessage::from_body(&message.body) {
            Ok(push) => format!("lead {} (version {})", push.domain, push.lead_version),
            Err(_) => "a bulk sync step or unreadable message".to_owned(),
        },
    }
}

/// Writes `lines` as a table people read (one dead letter per line).
pub fn print_table(out: &mut impl Write, lines: &[DeadLetterLine]) -> std::io::Result<()> {
    if lines.is_empty() {
        return writeln!(out, "no dead letters");
    }
    writeln!(
        out,
        "{:<14} {:<36} {:>8}  {:<40} LAST ERROR",
        "QUEUE", "MESSAGE ID", "RECEIVES", "ABOUT"
    )?;
    for line in lines {
        let error = line.last_error.as_deref().unwrap_or("(not recorded)");
        let error: String = error
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        writeln!(
            out,
            "{:<14} {:<36} {:>8}  {:<40} {}",
            line.queue, line.message_id, line.receive_count, line.about, error
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore};
    use hunter_core::ports::{FailureStore, MessageFailure, OutgoingMessage};

    use super::*;

    #[tokio::test]
    async fn when_a_message_died_should_list_it_with_its_last_error_and_what_it_was_about() {
        let store = EmbeddedStore::new();
        let queue = EmbeddedQueue::new("push", Duration::ZERO, 1);
        let body = PushMessage {
            domain: "contoso.com".into(),
            lead_version: 3,
            force: false,
            deferrals: 0,
        }
        .to_body();
        queue
            .send_batch(&[OutgoingMessage::new("0", body)])
            .await
            .unwrap();
        let received = queue.receive(1, None, Duration::ZERO).await.unwrap();
        store
            .record_failure(&MessageFailure {
                queue: "dynamics-push".into(),
                message_id: received[0].message_id.clone(),
                receive_count: 1,
                error: "dataverse answered 500\nagain".into(),
                at: hunter_domain::clock::now(),
            })
            .await
            .unwrap();
        // Visible again after its one receive: dead-lettered on the next look.
        queue.receive(1, None, Duration::ZERO).await.unwrap();

        let lines = list(&store, &queue, QueueName::DynamicsPush).await.unwrap();

        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].about, "lead contoso.com (version 3)");
        assert_eq!(
            lines[0].last_error.as_deref(),
            Some("dataverse answered 500\nagain")
        );
        let mut table = Vec::new();
        print_table(&mut table, &lines).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert_eq!(
            table.lines().count(),
            2,
            "a control character cannot break a line: {table}"
        );
        assert!(table.contains("dataverse answered 500 again"));
    }
}
