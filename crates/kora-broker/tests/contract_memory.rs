//! The broker contract on the in-memory broker.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_broker::memory::MemoryBroker;
use kora_broker::testing;

macro_rules! contract {
    ($($name:ident),*) => {$(
        #[tokio::test]
        async fn $name() {
            testing::$name(&MemoryBroker::new(), "T").await;
        }
    )*};
}

contract!(
    publish_fetch_ack,
    dedup_by_message_id,
    redelivery_after_ack_wait,
    nak_delay_and_progress,
    term_stops_redelivery,
    max_deliveries_then_replay,
    competing_consumers_share_work,
    limits_stream_keeps_messages,
    publish_many_large_batch
);
