//! The API audit trail: every mutating call an authenticated caller makes is recorded (who,
//! tenant, action, target, outcome, status, client address, request id) before it is answered.
//! Entries from concurrent requests are written together, one ledger transaction for many.

use std::sync::Arc;
use std::time::Duration;

use kora_store::{ApiAuditEntry, Store};
use tokio::sync::{mpsc, oneshot};

type Pending = (ApiAuditEntry, oneshot::Sender<bool>);

#[derive(Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the writer; it stops when every clone of the writer is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(write_loop(store, rx));
        AuditWriter { tx }
    }

    /// Records `entry`; `false` when it could not be written (logged).
    pub(crate) async fn record(&self, entry: ApiAuditEntry) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send((entry, done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Whatever else is waiting joins this transaction.
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let entries: Vec<ApiAuditEntry> = batch.iter().map(|(e, _)| e.clone()).collect();
        let mut ok = false;
        for attempt in 0..3u32 {
            match store.record_api_calls(&entries).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = entries.len(), attempt, "cannot write the API audit trail");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(ok);
        }
    }
}
