//! The transactional outbox: committed decisions are published by a task of their own (in
//! commit order, pipelined) and marked published (by the next ledger commit, or by the
//! publisher once it is idle); the sweeper re-sends the dispatches whose publish was never
//! confirmed (a crash between commit and publish).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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

/// How long the publisher waits for the next commit to carry its marks before it writes them
/// itself. Far below the sweeper's grace, so a mark is never that late.
const MARK_IDLE: Duration = Duration::from_millis(20);

/// Tasks published but not yet marked in the ledger. The mark is the sweeper's hint: the next
/// ledger commit carries the marks (no statement of their own on the hot path), or the
/// publisher writes them once no commit came for [`MARK_IDLE`].
#[derive(Default)]
pub(crate) struct Marks(std::sync::Mutex<Vec<AttemptKey>>);

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AttemptKey>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every mark waiting, for a commit to carry.
    pub(crate) fn take(&self) -> Vec<AttemptKey> {
        std::mem::take(&mut *self.lock())
    }

    /// Marks a commit took but did not write (it failed): the next one carries them.
    pub(crate) fn put_back(&self, keys: Vec<AttemptKey>) {
        self.lock().extend(keys);
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The outbox publisher: publishes each committed batch's tasks and events (pipelined, in
/// commit order, so a run's events stay in sequence), then leaves the tasks' marks for the
/// next commit (writing them itself when it is idle). Ends when the coordinator drops its
/// sender, after publishing what is queued and writing the marks.
pub(crate) async fn publish_decisions(
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    mut rx: tokio::sync::mpsc::Receiver<Published>,
    marks: Arc<Marks>,
) {
    loop {
        let job = match tokio::time::timeout(MARK_IDLE, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                write_marks(store.as_ref(), &marks).await;
                return;
            }
            Err(_) => {
                write_marks(store.as_ref(), &marks).await;
                continue;
            }
        };
        let results = broker.publish_many(job.publish).await;
        for r in &results {
            if let Err(e) = r {
                // The ledger holds the decision; the outbox sweeper re-sends it.
                error!(error = %e, "publish after commit failed; the outbox sweeper will re-send it");
            }
        }
        marks.put_back(
            job.task_keys
                .into_iter()
                .filter(|(i, _)| results.get(*i).is_some_and(Result::is_ok))
                .map(|(_, k)| k)
                .collect(),
        );
    }
}

/// Writes the marks no commit carried.
async fn write_marks(store: &dyn Store, marks: &Marks) {
    if marks.is_empty() {
        return;
    }
    let sent = marks.take();
    if let Err(e) = store.mark_published(&sent, now_ms()).await {
        // Harmless: the sweeper re-sends them and the duplicates are ignored.
        warn!(error = %e, tasks = sent.len(), "cannot mark tasks published");
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
