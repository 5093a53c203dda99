//! One contract suite for the store and queue ports, run against every backend:
//! `embedded::*` (in-memory adapters), `sqlite::*` (the durable embedded adapters, one SQLite
//! file per test) and `moto::*` (DynamoDB and SQS in moto server over HTTP,
//! with the real AWS SDK). Run one backend alone with `make test-embedded` or `make test-moto`.
#![allow(clippy::unwrap_used)]

mod queue;
mod refresh_token;
mod store;

use std::time::Duration;

/// maxReceiveCount of the queues under test.
const MAX_RECEIVES: u32 = 2;

macro_rules! contract_suite {
    ($backend:ident, $store:path, $queue:path) => {
        mod $backend {
            use super::*;

            macro_rules! store_test {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let fixture = $store().await;
                        store::$name(fixture.store.as_ref()).await;
                    }
                };
            }
            macro_rules! queue_test {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let fixture = $queue(Duration::from_secs(30), MAX_RECEIVES).await;
                        queue::$name(fixture.queue.as_ref()).await;
                    }
                };
            }

            store_test!(upsert_inserts_then_a_newer_version_replaces);
            store_test!(upsert_rejects_a_stale_version);
            store_test!(a_batch_of_referrals_is_upserted_each_with_its_own_outcome);
            store_test!(upsert_of_an_equal_version_is_idempotent);
            store_test!(a_record_round_trips_every_field);
            store_test!(a_record_with_a_600_kb_raw_payload_round_trips);
            store_test!(payloads_are_kept_whole_by_key);
            store_test!(referrals_page_newest_first_with_stable_cursors);
            store_test!(referrals_filter_by_eligibility_reason_status_and_text);
            store_test!(a_foreign_cursor_is_rejected);
            store_test!(leads_are_written_with_a_version_check);
            store_test!(leads_list_by_score_and_segment);
            store_test!(a_lead_and_a_referral_contribution_are_written_together_or_not_at_all);
            store_test!(contributions_page_by_referral_id);
            store_test!(lead_stats_count_every_lead_exactly);
            store_test!(leads_filter_by_any_of_several_priority_categories);
            store_test!(audit_entries_are_append_only_and_newest_first);
            store_test!(sync_runs_list_newest_first);
            store_test!(sync_state_is_written_with_a_version_check);
            store_test!(ingest_counts_add_up_and_survive_run_updates);
            store_test!(ingest_counts_of_a_batch_count_each_referral_once);
            store_test!(a_message_failure_is_kept_per_queue_and_message);

            queue_test!(sent_messages_are_received_once_and_deleted);
            queue_test!(a_received_batch_is_deleted_at_once_and_only_what_it_names);
            queue_test!(a_batch_with_a_bad_entry_fails_only_that_entry);
            queue_test!(a_malformed_batch_is_refused_whole_and_not_retryable);
            queue_test!(a_message_reappears_when_its_visibility_timeout_expires);
            queue_test!(changing_visibility_to_zero_releases_a_message_now);
            queue_test!(a_message_moves_to_the_dead_letter_queue_after_max_receives);
        }
    };
}

contract_suite!(
    embedded,
    hunter_tests::embedded_store,
    hunter_tests::embedded_queue
);
contract_suite!(moto, hunter_tests::moto_store, hunter_tests::moto_queue);
contract_suite!(
    sqlite,
    hunter_tests::sqlite_store,
    hunter_tests::sqlite_queue
);
