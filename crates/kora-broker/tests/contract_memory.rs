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

kora_broker::contract_checks!(contract);
