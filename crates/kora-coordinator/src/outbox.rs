//! The transactional outbox: committed decisions are published by a task of their own (in
//! commit order, pipelined) and marked published; the sweeper re-sends the dispatches whose
//! publish was never confirmed (a crash between commit and publish).

use std::collections::BTreeMap;
use std::sync::Arc;

use kora_broker::{Broker, Outbound};
use kora_model::now_ms;
use kora_store::{AttemptKey, Store};
use tracing::{error, warn};

use crate::config::ms;
use crate::{Coordinator, Error};

/// What one committed batch must publish: tasks and events, and which entries are tasks.
#[derive(Default)]
pub(crate) struct Published {
    pub(crate) publish: Vec<Outbound>,
    pub(crate) task_keys: Vec<(usize, AttemptKey)>,
}

impl Published {
    pub(crate) fn task(&mut self, msg: Outbound, key: AttemptKey) {
        self.task_keys.push((self.publish.len(), key));
        self.publish.push(msg);
    }
}

/// The outbox publisher: publishes each committed batch's tasks and events (pipelined, in
/// commit order, so a run's events stay in sequence), then marks the tasks published in the
/// ledger. Ends when the coordinator drops its sender, after publishing what is queued.
pub(crate) async fn publish_decisions(
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    mut rx: tokio::sync::mpsc::Receiver<Published>,
) {
    while let Some(job) = rx.recv().await {
        let results = broker.publish_many(job.publish).await;
        for r in &results {
            if let Err(e) = r {
                // The ledger holds the decision; the outbox sweeper re-sends it.
                error!(error = %e, "publish after commit failed; the outbox sweeper will re-send it");
            }
        }
        let sent: Vec<AttemptKey> = job
            .task_keys
            .into_iter()
            .filter(|(i, _)| results.get(*i).is_some_and(Result::is_ok))
            .map(|(_, k)| k)
            .collect();
        if let Err(e) = store.mark_published(&sent, now_ms()).await {
            // Harmless: the sweeper re-sends them and the duplicates are ignored.
            warn!(error = %e, tasks = sent.len(), "cannot mark tasks published");
        }
    }
}

impl Coordinator {
    /// Re-sends tasks the ledger says were dispatched but whose publish was never confirmed.
    /// Re-sending is idempotent: the task id is the message id, and a duplicate result is
    /// fenced.
    pub(crate) async fn sweep_outbox(&self) -> Result<usize, Error> {
        let cutoff = now_ms().saturating_sub(ms(self.env.cfg.outbox_grace));
        let keys = self.store.unpublished(cutoff, 1000).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        let mut by_run: BTreeMap<String, Vec<AttemptKey>> = BTreeMap::new();
        for k in keys {
            by_run.entry(k.run_id.clone()).or_default().push(k);
        }
        let mut sent = Vec::new();
        for (run_id, keys) in by_run {
            let Some(run) = self.rebuild(&run_id).await? else {
                continue;
            };
            let wf = Arc::clone(run.state.workflow());
            let mut job = Published::default();
            for k in keys {
                let Some(&node) = wf.index.get(&k.node_id) else {
                    continue;
                };
                if let Some(Ok((msg, key))) = self.env.resend(&run, node, k.iteration, k.attempt) {
                    job.task(msg, key);
                }
            }
            let keys: Vec<AttemptKey> = job.task_keys.into_iter().map(|(_, k)| k).collect();
            for (k, r) in keys
                .into_iter()
                .zip(self.broker.publish_many(job.publish).await)
            {
                if r.is_ok() {
                    sent.push(k);
                }
            }
        }
        if !sent.is_empty() {
            warn!(
                tasks = sent.len(),
                "re-published tasks whose publish was lost between commit and publish"
            );
            self.metrics.tasks_republished.inc_by(sent.len() as u64);
            self.store.mark_published(&sent, now_ms()).await?;
        }
        Ok(sent.len())
    }
}
